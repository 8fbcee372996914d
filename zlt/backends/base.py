"""The one shape of a training backend. Everything zlt does differently per trainer is an attribute or a method
here; the rest of zlt asks `zlt.backends.get(name)` and never compares a backend's name.

A backend package (zlt/backends/<name>/) holds its renderer, its log parser, its parity table and one subclass of
`Backend`; zlt/backends/__init__.py lists the instances. Adding a trainer is one new folder plus its line there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from zlt.core.events import Event
from zlt.profiles import HardwareProfile
from zlt.render.base import RenderContext, RenderResult
from zlt.render.common import resolve_gradient_checkpointing
from zlt.spec.models import JobSpec

LineParser = Callable[[str], "Event | None"]
# (log prefixes) -> the matching lines of the job's train.log (artifacts.trained reads the log, the backend knows
# which lines say what)
LogLines = Callable[[tuple[bytes, ...]], Iterable[str]]


@dataclass(frozen=True)
class ProfileLever:
    """A profile field that lowers peak VRAM on this backend (preflight turns it into a `Lever`)."""

    name: str
    title: str
    section: str
    key: str
    value: Any


@dataclass(frozen=True)
class InstallFacts:
    """How preflight finds an external trainer's checkout and asks its Python what it imports."""

    env: str  # ZLT_AI_TOOLKIT: the checkout; <env>_PYTHON: its interpreter
    config_key: str  # the user config key (and TrainRequest/run_preflight keyword) naming the checkout
    flag: str  # the CLI flag naming the checkout
    probe_src: str | None = None  # a folder of the checkout to put on sys.path while probing (musubi: src)
    accelerate_cli: bool = False  # launched through accelerate: report which launcher it has


class Backend:
    """Defaults describe an external trainer launched as one process; subclasses set what differs."""

    name: ClassVar[str]
    title: ClassVar[str]
    builtin: ClassVar[bool] = False  # runs in zlt's own Python (no checkout to find)
    install: ClassVar[InstallFacts | None] = None  # None: built in
    trains_tiny_model: ClassVar[bool] = False  # can train the tiny test model (and so on the CPU profile)
    multi_gpu: ClassVar[bool] = False  # trains on several GPUs (job.resources.gpu > 1)
    reads_weight_files: ClassVar[bool] = False  # model.base.dit/vae/text_encoder (local files, never the hub)
    needs_hub_tokenizer: ClassVar[bool] = False  # fetches a tokenizer from the hub before training
    flips_in_prepare: ClassVar[bool] = False  # cannot flip: dataset prepare writes mirrored copies
    resumes_from_state: ClassVar[bool] = False  # resumes from a state folder and restarts its step counter at 0
    loss_is_next_steps: ClassVar[bool] = False  # the loss drawn on its bar at n=k belongs to step k+1
    log_file: ClassVar[str | None] = None  # its own log file in the job folder (-l FILE)
    init_format: ClassVar[str]  # the LoRA key layout a warm start hands it
    init_keeps_alpha: ClassVar[bool] = False  # its warm-start file carries alpha (the network does not apply it)
    lora_blocks: ClassVar[int] = 34  # transformer blocks its LoRA adapts (30 main + 4 refiners)
    lora_weight_grad_bytes: ClassVar[float] = 8.0  # LoRA weight + gradient bytes per parameter
    quantizes_text_encoder: ClassVar[bool] = False  # the text encoder stays resident and can be quantised

    # -- render ---------------------------------------------------------------------------------------------
    def render(self, spec: JobSpec, profile: HardwareProfile, ctx: RenderContext) -> RenderResult:
        raise NotImplementedError

    def gradient_checkpointing_lever(self, profile: HardwareProfile) -> tuple[bool, str]:
        """The profile's gradient checkpointing lever for this backend, and where it came from."""
        raise NotImplementedError

    def gradient_checkpointing(self, spec: JobSpec, profile: HardwareProfile) -> tuple[bool, str]:
        """(on, why). A value in the spec always wins; unset (null), the profile's lever for the backend decides."""
        return resolve_gradient_checkpointing(spec, self.gradient_checkpointing_lever(profile))

    def parity(self) -> dict[str, Any]:
        """What each spec field becomes on this backend (`zlt.backends.carried.Carried` per leaf field, beyond the
        fields zlt carries out itself)."""
        raise NotImplementedError

    # -- run ------------------------------------------------------------------------------------------------
    def parser(self, job_name: str) -> LineParser:
        """Its console lines -> events."""
        raise NotImplementedError

    def trainer_version(self, commit: str | None) -> str | None:
        """What result.json records as the trainer's version: the checkout's commit."""
        return commit

    # -- memory (preflight's VRAM estimate and levers) -------------------------------------------------------
    def memory_levers(self, spec: JobSpec, profile: HardwareProfile, *, base: float, q8: float, gc: bool,
                      gc_source: str, sample_res: int | None, quantize: bool | None,
                      notes: list[str]) -> dict[str, Any]:
        """The MemoryPlan fields this trainer decides (bytes per parameter, what stays resident, offload)."""
        raise NotImplementedError

    def profile_levers(self, profile: HardwareProfile, fits: Callable[[HardwareProfile], bool]) -> list[ProfileLever]:
        """Profile fields that lower its peak VRAM, in the order to try them; `fits(profile)` sizes a choice."""
        return []

    def host_ram(self, profile: HardwareProfile, transformer_gb: float, text_encoder_gb: float) -> tuple[float, float]:
        """(GiB parked in host memory for the whole run, text encoder GiB loaded in the training process)."""
        return 0.0, text_encoder_gb

    # -- artifacts --------------------------------------------------------------------------------------------
    def resume_sources(self, out: Path, name: str, final_step: int) -> dict[str, Any] | None:
        """What to copy into a new job's output folder so that it resumes at `final_step`; None: no such state."""
        return None

    def rendered_facts(self, render_dir: Path, load: Callable[[Path, str], Any]) -> dict[str, Any]:
        """What the trainer was handed (precision, timestep, adapter, dropout), read from its rendered files."""
        return {}

    def reported_facts(self, phases: list[str], log_lines: LogLines, header: dict[str, str]) -> dict[str, Any]:
        """What the trainer itself reported (phase lines, its log, the saved file's header)."""
        return {}

    def __repr__(self) -> str:
        return f"<backend {self.name}>"
