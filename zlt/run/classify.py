"""Why a trainer run ended: status and a cause from `FAILURE_CAUSES`, with a hint on what to do.

Order matters: a stop zlt asked for wins (ai-toolkit exits 0 on SIGINT), then a diverged loss, then what the
output says (CUDA OOM, host OOM kill, a model file that is not there, a bad input file, a missing package, a
failed download, a rejected config), then the exit code. Anything else is `unknown`, reported with the last 40
log lines.

Input errors (`zlt.core.causes.is_input_error`) fail the same way however often they run: a retry cannot help.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from typing import Any

from zlt.run.interpret import RunFacts
from zlt.run.parse_common import is_cuda_oom

HOST_OOM_MARKERS = ("Signals.SIGKILL", "died with <Signals.SIGKILL", "exit status -9", "exit status 137")
IMPORT_MARKERS = ("ModuleNotFoundError", "ImportError", "No module named", "cannot import name")
DOWNLOAD_MARKERS = (
    "RepositoryNotFoundError", "GatedRepoError", "LocalEntryNotFoundError", "EntryNotFoundError",
    "RevisionNotFoundError", "HfHubHTTPError", "401 Client Error", "403 Client Error",
    "couldn't connect to 'https://huggingface.co'", "We couldn't connect to",
    "is not a local folder and is not a valid model identifier", "Max retries exceeded with url",
    "does not appear to have a file named", "Repository Not Found", "hf-mirror.com", "model_download: ",
)
CONFIG_MARKERS = (
    "unrecognized arguments", "the following arguments are required", "invalid choice:",
    "Invalid user config", "MultipleInvalid", "extra keys not allowed", "yaml.scanner.ScannerError",
    "yaml.parser.ParserError", "Unknown job type", "Environment variable", "not found in config",
    "pydantic_core._pydantic_core.ValidationError", "toml.decoder", "tomllib.TOMLDecodeError",
)
# A model file that is not where it must be (local path, or the HF cache with downloads off): fetching it fixes it.
MISSING_MARKERS = (
    "LocalEntryNotFoundError", "Cannot find the requested files in the local cache", "outgoing traffic has been disabled",
    "HF_HUB_OFFLINE=1 forbids downloading",
)
# A file or folder the user handed over that the trainer cannot use (zlt/trainer/models.py, safetensors, diffusers).
BAD_INPUT_MARKERS = (
    "no LoRA layers found", "does not match the transformer", "not a complete diffusers folder",
    "the folder must be a diffusers Z-Image folder", "SafetensorError", "Error while deserializing header",
    "HeaderTooLarge", "InvalidHeaderDeserialization", "MetadataIncompleteBuffer", "no file named diffusion_pytorch_model",
    "model_index.json is missing",
)
_BAD_ADAPTER = re.compile(r"training_adapter .*: not a file")
_MISSING_WEIGHTS = re.compile(r"(FileNotFoundError|No such file or directory).*\.(safetensors|bin|pt|gguf)")
# musubi-tuner (src/musubi_tuner/zimage/zimage_utils.py load_qwen3): `Loading tokenizer from Tongyi-MAI/Z-Image`, then
# Qwen2Tokenizer.from_pretrained(..., subfolder="tokenizer") with no local-path option.
_TOKENIZER_LOAD = re.compile(r"Loading tokenizer from (\S+)")
_TOKENIZER_DONE = "Encoding prompts with"  # the next line musubi's text-encoder caching logs
_ARGPARSE = re.compile(r"^[\w.\-]+(\.py)?: error: ")

HINTS = {
    "host_oom": "the operating system killed the trainer for lack of RAM: free memory, add swap, "
                "or use a profile with less CPU offload (and fewer data loader workers)",
    "import_error": "the trainer's Python environment is missing a package: install the trainer's "
                    "requirements into that interpreter (see `zlt preflight`)",
    "model_download": "the base model, adapter or weights could not be fetched: download them first "
                      "(set HF_TOKEN for gated repos), or point the spec at local files",
    "bad_config": "the trainer rejected the rendered config: inspect render/ in the job folder "
                  "(`zlt render`) and check the trainer checkout's version",
    "unknown": "read the last log lines below and train.log in the job folder",
    "model_missing": "a model file is not where the trainer looks: download it first (with the network on), or point "
                     "the spec at a local file",
    "bad_input": "a model, adapter or weights file the spec names cannot be used: check the path and that it is a "
                 "Z-Image diffusers folder / LoRA .safetensors (`zlt preflight` checks them)",
    "diverged": "lower training.learning_rate (or train in bf16 instead of fp16); the checkpoints saved before the "
                "loss went nan/inf are kept",
}



def is_interrupt(ev: object) -> bool:
    """A traceback that only says the process was interrupted (KeyboardInterrupt in the trainer or in accelerate,
    or accelerate's CalledProcessError for a child that died of SIGINT/SIGTERM)."""
    message = str(getattr(ev, "message", "") or "")
    tb = getattr(ev, "traceback", None) or []
    last = (tb[-1] if tb else "").strip()
    if message.startswith("KeyboardInterrupt") or last.startswith("KeyboardInterrupt"):
        return True
    return "CalledProcessError" in message and ("SIGINT" in message or "SIGTERM" in message)


def _tokenizer_failure(lines: list[str]) -> str | None:
    """The repo musubi was loading its tokenizer from, when that was the last thing it logged before failing."""
    for line in reversed(lines):
        s = line.strip()
        if s.startswith(("INFO:", "WARNING:", "ERROR:")) or "%|" in s:
            m = _TOKENIZER_LOAD.search(s)
            return m.group(1) if m and _TOKENIZER_DONE not in s else None
    return None


@dataclass
class Outcome:
    status: str  # succeeded | failed | cancelled | timeout
    cause: str | None = None
    message: str | None = None
    hint: str | None = None
    log_tail: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "cause": self.cause, "message": self.message, "hint": self.hint,
                "log_tail": self.log_tail}


REPORT_LINES = 40


def compact_tail(lines: list[str], n: int = REPORT_LINES) -> list[str]:
    """The last n lines, each run of redraws of one progress bar folded into its last redraw."""
    out: list[str] = []
    for line in lines:
        k = line.find("%|")
        if k >= 3 and out:
            prev = out[-1]
            if prev.find("%|") == k and prev[:k - 3] == line[:k - 3]:
                out[-1] = line
                continue
        out.append(line)
    return out[-n:]


def _first(lines: list[str], markers: tuple[str, ...]) -> str | None:
    for line in reversed(lines):
        if any(m in line for m in markers):
            return line.strip()
    return None


def _main_error(facts: RunFacts) -> str | None:
    """The error that explains the failure: a launcher's wrapper error (accelerate's
    CalledProcessError around the training script) only repeats that the script failed."""
    messages = [getattr(e, "message", "") for e in facts.errors]
    real = [m for m in messages if m and "CalledProcessError" not in m]
    return (real or messages or [None])[-1]


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "no exit code"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def classify(
    *,
    returncode: int | None,
    stop_reason: str | None,
    signals_sent: list[str],
    facts: RunFacts,
    oom_hint: str = "",
    timeout_hours: float | None = None,
    expect_final: bool = False,
    have_final: bool = True,
    hf_cli: str = "hf",
    job_id: str = "JOB_ID",
) -> Outcome:
    """Status and cause of one trainer process (or the last step of a multi-step job); `job_id` goes into the
    command that continues a stopped job."""
    raw = list(facts.tail)
    tail = compact_tail(raw)
    if stop_reason == "timeout":
        limit = f" after job.timeout_hours={timeout_hours:g}" if timeout_hours else ""
        return Outcome("timeout", "timeout", f"stopped{limit} ({describe_exit(returncode)})",
                       "raise job.timeout_hours or train fewer steps; checkpoints saved so far are kept: "
                       f"'zlt retry {job_id}' continues from the last one")
    if stop_reason == "cancelled":
        return Outcome("cancelled", "cancelled", f"cancelled by the user ({describe_exit(returncode)})",
                       f"'zlt retry {job_id}' continues it (from its last checkpoint, if one was saved)")
    if stop_reason == "diverged" or facts.diverged_at is not None:
        at = f" from step {facts.diverged_at}" if facts.diverged_at is not None else ""
        return Outcome("failed", "diverged", f"training diverged: the loss was nan/inf{at} (training.stop_on_nan)",
                       HINTS["diverged"], tail)
    if stop_reason == "early_stop":
        return Outcome("succeeded", None, f"stopped early by eval.early_stop ({describe_exit(returncode)})")
    if returncode == 0:
        if facts.job_stopped:
            return Outcome("cancelled", "cancelled", "the trainer was interrupted outside zlt (it printed 'Job stopped')")
        if expect_final and not have_final:
            return Outcome("failed", "unknown", "the trainer exited 0 but saved no final LoRA file",
                           HINTS["unknown"], tail)
        return Outcome("succeeded")

    texts = raw + [e.message for e in facts.errors if hasattr(e, "message")]
    oom_line = facts.fatal_oom or next((t.strip() for t in reversed(texts) if is_cuda_oom(t)), None)
    if oom_line:
        return Outcome("failed", "cuda_oom", f"CUDA out of memory: {oom_line}", oom_hint or None, tail)
    killed = returncode in (-signal.SIGKILL, 128 + signal.SIGKILL) and "SIGKILL" not in signals_sent
    marker = _first(texts, HOST_OOM_MARKERS)
    if killed or marker:
        msg = marker or f"the trainer was {describe_exit(returncode)} without zlt asking (host out of memory?)"
        return Outcome("failed", "host_oom", msg, HINTS["host_oom"], tail)
    repo = _tokenizer_failure(raw)
    if repo is not None and not _first(texts, ("No module named",)):
        last = _main_error(facts)
        return Outcome("failed", "model_missing",
                       f"the tokenizer {repo}/tokenizer could not be loaded (musubi fetches it from the Hugging Face "
                       f"hub and has no option for a local copy)" + (f": {last}" if last else ""),
                       f"download it into the HF cache with the network on: {hf_cli} download {repo} --include "
                       f"'tokenizer/*'", tail)
    line = _first(texts, MISSING_MARKERS) or next((t.strip() for t in reversed(texts) if _MISSING_WEIGHTS.search(t)), None)
    if line:
        return Outcome("failed", "model_missing", line, HINTS["model_missing"], tail)
    line = _first(texts, BAD_INPUT_MARKERS) or next((t.strip() for t in reversed(texts) if _BAD_ADAPTER.search(t)), None)
    if line:
        return Outcome("failed", "bad_input", line, HINTS["bad_input"], tail)
    line = _first(texts, IMPORT_MARKERS)
    if line:
        return Outcome("failed", "import_error", line, HINTS["import_error"], tail)
    line = _first(texts, DOWNLOAD_MARKERS)
    if line:
        return Outcome("failed", "model_download", line, HINTS["model_download"], tail)
    line = _first(texts, CONFIG_MARKERS) or next((t.strip() for t in reversed(texts) if _ARGPARSE.match(t)), None)
    if line:
        return Outcome("failed", "bad_config", line, HINTS["bad_config"], tail)
    last_error = _main_error(facts)
    msg = f"trainer failed ({describe_exit(returncode)})" + (f": {last_error}" if last_error else "")
    return Outcome("failed", "unknown", msg, HINTS["unknown"], tail)
