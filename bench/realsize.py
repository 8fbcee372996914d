"""Real-size rehearsal: the user's `zlt train` and `zlt generate` on a random-weight Z-Image of the real size.

    python bench/realsize.py                       # real size on this machine (tens of minutes on 2 CPU cores)
    python bench/realsize.py --scale small         # every code path in seconds (dim 256, 2 layers)
    python bench/realsize.py --stages bf16         # one stage again (the model folder is reused)

Stages (`--stages`, default all, in this order):
  write    a random-weight Z-Image folder in diffusers layout under --out (bench/realsize_model.py says what is
           in it), reused when present;
  bf16     `zlt train` on it: model.base.name = the folder, source local, the built-in trainer, 256 px, 3 images,
           2 steps, rank 16, gradient checkpointing on, planned for a 24 GiB card (`--vram-gb 24`): preflight,
           caching with the real-size text encoder (then freed), LoRA injection, steps, checkpoint, collection;
  float8   the same with model.base.quantize=float8;
  generate `zlt generate` of the bf16 LoRA on the real-size pipeline: one 256 px image in 2 steps.
Not in CI: it takes tens of minutes at real size.

While a command runs, its process tree is sampled every 0.5 s (resident memory of each process, the host's
available memory) and its NDJSON events are timestamped as they arrive: phase times, per-step times, peak resident
memory per phase. The trainer writes its own figures (`memory.json`: VmRSS/VmHWM at each phase mark, the CUDA
allocator's peaks on a GPU, the transformer's tensor bytes by dtype). Beside them the VRAM estimator's
per-component figures for the same spec and profile (24gb). Everything goes to --json (default
bench/results/realsize.json at real size) and a markdown table is printed for docs/performance.md.

If the host's available memory drops below 1 GiB (other jobs), the command's processes are paused (SIGSTOP) until
2 GiB are free again; the pause is recorded (`paused_s`) and is part of the step times. Each training stage empties
the latent and caption cache first, so every run encodes with the real VAE and text encoder and then frees them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from realsize_model import write_model  # noqa: E402

GIB = float(1 << 30)
ZLT = [sys.executable, "-m", "zlt"]
STAGES = ("write", "bf16", "float8", "generate")
PROMPT = "a lighthouse on a cliff at dusk"


def mem_available() -> int:
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_anon(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Monitor(threading.Thread):
    """Samples the process tree of `pid`: resident memory per process and in all, per phase."""

    def __init__(self, pid: int, interval: float = 0.5, low: float = 1.0 * GIB, resume: float = 2.0 * GIB):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.interval, self.low, self.resume = interval, low, resume
        self.phase = "start"
        self.peaks: dict[str, dict[str, int]] = {}
        self.tree_peak = 0
        self.proc_peak: dict[str, int] = {}  # 'name pid' -> peak RSS
        self.anon_peak: dict[str, int] = {}  # 'name pid' -> peak anonymous RSS (not memory-mapped files)
        self.min_available = mem_available()
        self.paused_s = 0.0
        self.stop = threading.Event()

    def _procs(self):
        import psutil

        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _label(self, p) -> str:
        try:
            cmd = " ".join(p.cmdline())
        except Exception:  # gone between listing and reading
            return f"? {p.pid}"
        kind = "trainer" if "zlt.trainer" in cmd else ("zlt " + cmd.split(" -m zlt ", 1)[-1].split()[0]
                                                        if " -m zlt " in cmd else p.name())
        return f"{kind} {p.pid}"

    def _signal(self, procs, sig) -> None:
        for p in procs:
            try:
                os.kill(p.pid, sig)
            except OSError:
                pass

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            procs = self._procs()
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                except Exception:  # exited
                    continue
                total += rss
                label = self._label(p)
                if label.startswith("?"):
                    continue
                self.proc_peak[label] = max(self.proc_peak.get(label, 0), rss)
                anon = _rss_anon(p.pid)
                if anon is not None:
                    self.anon_peak[label] = max(self.anon_peak.get(label, 0), anon)
                if label.startswith("trainer"):
                    ph = self.peaks.setdefault(self.phase, {"tree": 0, "trainer": 0})
                    ph["trainer"] = max(ph["trainer"], rss)
            ph = self.peaks.setdefault(self.phase, {"tree": 0, "trainer": 0})
            ph["tree"] = max(ph["tree"], total)
            self.tree_peak = max(self.tree_peak, total)
            avail = mem_available()
            self.min_available = min(self.min_available, avail)
            if avail < self.low and procs:
                t = time.monotonic()
                print(f"  host memory low ({avail / GIB:.1f} GiB available): pausing the run", flush=True)
                self._signal(procs, signal.SIGSTOP)
                while mem_available() < self.resume and not self.stop.is_set():
                    time.sleep(2)
                self._signal(procs, signal.SIGCONT)
                self.paused_s += time.monotonic() - t


def wait_for_memory(need: float, max_wait_s: float = 900) -> float:
    """Wait (up to max_wait_s) until the host has `need` bytes available; returns what is available."""
    t = time.monotonic()
    while (avail := mem_available()) < need and time.monotonic() - t < max_wait_s:
        print(f"  waiting for memory: {avail / GIB:.1f} GiB available, {need / GIB:.1f} GiB wanted", flush=True)
        time.sleep(15)
    return avail


TIGHT_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1048576", "MALLOC_TRIM_THRESHOLD_": "1048576"}
TRAIN_KEYS = ("bf16", "float8", "bf16, tight malloc", "float8, tight malloc")


def run_zlt(argv: list[str], log: Path, timeout_s: float | None, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a zlt command with --json, sampling its process tree; returns events, timings and peaks."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    t0 = time.time()
    with open(log, "w", encoding="utf-8") as err:
        proc = subprocess.Popen([*ZLT, *argv], stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=REPO)
        mon = Monitor(proc.pid)
        mon.start()
        timer = threading.Timer(timeout_s, proc.terminate) if timeout_s else None
        if timer:
            timer.start()
        events: list[dict[str, Any]] = []
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(ev, dict):
                ev["_t"] = round(time.time() - t0, 2)
                events.append(ev)
                if ev.get("type") == "phase":
                    mon.phase = f"{ev['phase']}: {ev.get('message', '')[:40]}"
                elif ev.get("type") == "progress":
                    mon.phase = f"step {ev.get('step')}"
        rc = proc.wait()
        if timer:
            timer.cancel()
        mon.stop.set()
        mon.join()
    return {"argv": ["zlt", *argv], "rc": rc, "seconds": round(time.time() - t0, 1), "events": events,
            "stdout": "".join(lines)[-20000:], "peak_rss_tree_bytes": mon.tree_peak, "peak_rss_by_process": mon.proc_peak,
            "peak_rss_anon_by_process": mon.anon_peak,
            "peak_rss_by_phase": mon.peaks, "min_host_available_bytes": mon.min_available,
            "paused_s": round(mon.paused_s, 1), "log": str(log)}


def phase_times(events: list[dict[str, Any]], end_t: float) -> list[dict[str, Any]]:
    """Each phase event's span until the next phase (or progress/end): what the run spent where."""
    marks = [(e["_t"], f"{e['phase']}: {e.get('message', '')}") for e in events if e.get("type") == "phase"]
    out = []
    for i, (t, label) in enumerate(marks):
        nxt = marks[i + 1][0] if i + 1 < len(marks) else end_t
        out.append({"phase": label[:120], "start_s": t, "seconds": round(nxt - t, 2)})
    return out


def write_dataset(folder: Path, n: int, res: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        yy, xx = np.mgrid[0:res, 0:res]
        base = np.stack([(xx * (i + 1)) % 256, (yy * 2) % 256, ((xx + yy) * (3 - i % 3)) % 256], -1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype("uint8")
        Image.fromarray(img).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a striped test picture number {i}")
    return folder


def spec_yaml(model: Path, data: Path, args) -> str:
    gpu = 1 if args.device == "cuda" else 0
    return f"""# written by bench/realsize.py
name: realsize
preset: style
model:
  base: {{name: {model}, source: local, precision: bf16, variant: base, training_adapter: none, quantize: none}}
  lora: {{rank: {args.rank}, alpha: {args.rank}}}
dataset:
  path: {data}
  resolution: {args.resolution}
  repeats: 1
  augment: {{horizontal_flip: false}}
training:
  backend: lightning
  batch_size: 1
  gradient_accumulation: 1
  max_steps: {args.steps}
  warmup_steps: 0
  optimizer: {{type: adamw, use_8bit: false}}
  mixed_precision: bf16
  gradient_checkpointing: true
  sample: {{enable: false}}
job:
  resources: {{gpu: {gpu}}}
output:
  save: {{every: {args.steps}, keep: 1, dtype: bf16}}
"""


def lora_facts(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        dtypes = sorted({str(f.get_slice(k).get_dtype()) for k in keys})
        params = 0
        for k in keys:
            n = 1
            for s in f.get_slice(k).get_shape():
                n *= s
            params += n
    return {"file": str(path), "bytes": path.stat().st_size, "keys": len(keys), "params": params, "dtypes": dtypes,
            "example_key": keys[0] if keys else None}


def estimator_figures(spec_path: Path, quantize: str, profile_name: str) -> dict[str, Any]:
    from zlt.preflight.vram import estimate, lora_param_count, plan
    from zlt.profiles import get_profile
    from zlt.spec.load import load_spec

    spec = load_spec(spec_path, sets=[f"model.base.quantize={quantize}"]).spec
    profile = get_profile(profile_name)
    est = estimate(spec, profile, "lightning")
    p = plan(spec, profile, "lightning")
    c = profile.estimator
    return {"profile": profile_name, "total_gib": est.total_gb, "allocated_gib": est.allocated_gb, "parts_gib": est.parts,
            "phases_gib": est.phases, "lora_params": lora_param_count(spec, "lightning"),
            "lora_bytes_per_param": p.lora_bytes_per_param,
            "text_encoder_load_gib": c.text_encoder_params_b * 1e9 * p.load_text_encoder_bytes / GIB,
            "transformer_bytes_per_param": p.transformer_bytes, "notes": est.notes}


def counted_float8_bytes(model_dir: Path) -> dict[str, Any]:
    """Tensor bytes of transformer and text encoder under the trainer's float8_storage, counted on the meta device
    (the same dtype decisions, no memory)."""
    import json as _json

    import torch
    from realsize_model import _meta_model

    from zlt.trainer.accel import float8_storage
    from zlt.trainer.config import LoraConfig
    from zlt.trainer.memstats import module_bytes
    from zlt.trainer.models import add_lora

    out = {}
    for kind in ("transformer", "text_encoder"):
        cfg = _json.loads((model_dir / kind / "config.json").read_text())
        if kind == "transformer":
            cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            m = _meta_model(kind, cfg)
        finally:
            torch.set_default_dtype(old)
        m.requires_grad_(False)
        if kind == "transformer":
            with torch.device("meta"):
                add_lora(m, LoraConfig(rank=16, alpha=16), seed=0)
        bf16 = module_bytes(m)
        float8_storage(m, torch.bfloat16)
        out[kind] = {"bf16": bf16, "float8": module_bytes(m)}
    return out


def train_stage(name: str, quantize: str, model_dir: Path, spec_path: Path, home: Path, args, logs: Path) -> dict[str, Any]:
    need = (14.5 if args.scale == "real" else 0.5) * GIB
    if args.device == "cpu":
        wait_for_memory(need)
    for part in ("latents", "text"):  # every stage encodes with the real VAE and text encoder, then frees them
        shutil.rmtree(home / "cache" / part, ignore_errors=True)
    # planned for a 24 GiB card on the CPU and on a bigger GPU alike: the same levers as the estimate beside it
    argv = ["train", str(spec_path), "--home", str(home), "--json", "--set", f"model.base.quantize={quantize}",
            "--vram-gb", str(args.vram_gb)]
    print(f"[{name}] zlt {' '.join(argv)}", flush=True)
    r = run_zlt(argv, logs / f"{name}.log", args.budget_s, TIGHT_MALLOC if args.tight_malloc else None)
    if args.tight_malloc:
        r["env"] = TIGHT_MALLOC
    ev = r["events"]
    fin = next((e for e in ev if e.get("type") == "finished"), {})
    r["status"] = fin.get("status")
    r["phases"] = phase_times(ev, r["seconds"])
    prog = [e for e in ev if e.get("type") == "progress"]
    elapsed = [e.get("elapsed_s") for e in prog]
    r["step_seconds"] = [round(b - a, 2) for a, b in zip([0.0, *elapsed[:-1]], elapsed, strict=True)] if elapsed else []
    r["losses"] = [e.get("loss") for e in prog]
    ckpt = [e for e in ev if e.get("type") == "checkpoint"]
    if ckpt:
        out_dir = Path(ckpt[-1]["path"]).parent
        mem = out_dir / "memory.json"
        r["trainer_memory"] = json.loads(mem.read_text()) if mem.is_file() else None
    if fin.get("artifact"):
        art = Path(fin["artifact"])
        r["artifact"] = str(art)
        lora = art / "lora.safetensors"
        if lora.is_file():
            r["lora"] = lora_facts(lora)
    r["estimate"] = estimator_figures(spec_path, quantize, args.profile)
    print(f"[{name}] {r['status']} in {r['seconds']} s; steps {r['step_seconds']}; peak RSS tree "
          f"{r['peak_rss_tree_bytes'] / GIB:.2f} GiB", flush=True)
    return r


def generate_stage(art: str, home: Path, args, logs: Path, model_bytes: int) -> dict[str, Any]:
    """`model_bytes`: the largest component. The pipeline holds all of them, but its bf16 weights are memory-mapped
    from the safetensors files (page cache the kernel can drop and read again), so the working set of a denoising
    step is the transformer's, that of the prompt encoding the text encoder's."""
    if args.device == "cpu":
        avail = wait_for_memory(model_bytes + 2 * GIB)
        if avail < model_bytes + 1 * GIB:
            return {"status": "skipped", "why": f"a denoising step touches {model_bytes / GIB:.1f} GiB of weights; "
                    f"{avail / GIB:.1f} GiB available"}
    argv = ["generate", art, "-p", PROMPT, "--size", f"{args.resolution}x{args.resolution}", "--steps", "2",
            "--count", "1", "--home", str(home), "--json"]
    print(f"[generate] zlt {' '.join(argv)}", flush=True)
    r = run_zlt(argv, logs / "generate.log", args.budget_s)
    try:
        out = json.loads(r["stdout"])
    except json.JSONDecodeError:
        out = {}
    r["status"] = "succeeded" if r["rc"] == 0 else "failed"
    r["result"] = {k: out.get(k) for k in ("folder", "path", "device", "seconds", "images") if k in out}
    print(f"[generate] {r['status']} in {r['seconds']} s; peak RSS tree {r['peak_rss_tree_bytes'] / GIB:.2f} GiB", flush=True)
    return r


def _gib(b: float | None) -> str:
    return "-" if b is None else f"{b / GIB:.2f}"


def _marks(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    mem = r.get("trainer_memory") or {}
    return {m["mark"]: m for m in mem.get("marks", [])}


def comparison(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Estimate vs measured per component (GiB), for each training stage."""
    rows = []
    files = res["model"]["components"]
    counted = res.get("counted_tensor_bytes") or {}
    for name in TRAIN_KEYS:
        r = res.get(name)
        if not r or "estimate" not in r:
            continue
        est = r["estimate"]
        parts = est["parts_gib"]
        marks = _marks(r)
        tb = (r.get("trainer_memory") or {}).get("tensor_bytes", {})
        lora_params = tb.get("lora_trainable_params") or (r.get("lora") or {}).get("params")
        tr_bytes = sum((tb.get("transformer") or {}).values()) - 4 * (lora_params or 0) if tb.get("transformer") else None
        te = counted.get("text_encoder", {}).get(name.split(",")[0])
        te_bytes = sum(te.values()) if te else files["text_encoder"]["bytes"]

        def row(component, est_gib, measured, how, name=name):
            err = None if measured in (None, 0) or est_gib is None else est_gib / (measured / GIB) - 1
            rows.append({"stage": name, "component": component, "estimate_gib": est_gib,
                         "measured_gib": None if measured is None else measured / GIB, "error": err, "how": how})

        row("transformer weights", parts.get("transformer"), tr_bytes, "tensor bytes in the trainer (memory.json), LoRA excluded")
        row("text encoder while caching", est["text_encoder_load_gib"], te_bytes,
            "tensor bytes of the loaded text encoder" + (" under float8_storage (meta count)" if name.startswith("float8") else " (files)"))
        row("VAE", parts.get("vae"), files["vae"]["bytes"], "tensor bytes (files)")
        lora_fp32 = (tb.get("transformer") or {}).get("torch.float32")
        row("LoRA weights + grads + AdamW", parts.get("lora_train_state"), None if lora_fp32 is None else 4 * lora_fp32,
            f"the trainer's fp32 LoRA tensor bytes x 4 (weight, gradient, AdamW's two moments, all fp32); "
            f"{lora_params:,} parameters (estimator: {est.get('lora_params', 0):,})" if lora_params else "")
        # The runtime (Python, torch, the cached latents) is what stays resident after the text encoder is freed.
        # bf16 weights are memory-mapped from the safetensors files (file-backed pages, resident once a step reads
        # them); float8 weights are made in the process (anonymous). So the steps' own memory is the rise of the
        # anonymous part over "model ready", and the steps' footprint the RSS sampled while they ran.
        runtime = marks.get("cached", {}).get("rss_bytes")
        anon_peak = max((v for k, v in (r.get("peak_rss_anon_by_process") or {}).items() if k.startswith("trainer")),
                        default=None)
        anon_ready = marks.get("model_ready", {}).get("rss_anon_bytes")
        act = anon_peak - anon_ready if None not in (anon_peak, anon_ready) else None
        row("activations + LoRA state + upcast copies (CPU: see the text)",
            parts.get("activations", 0) + parts.get("float8_upcast", 0) + parts.get("lora_train_state", 0), act,
            "trainer's anonymous RSS: peak (sampled) minus at model ready; CPU, not VRAM")
        steps_peak = max((v["trainer"] for k, v in (r.get("peak_rss_by_phase") or {}).items()
                          if k.startswith(("training", "step"))), default=None)
        row("tensors at the training peak", est["allocated_gib"] - parts.get("text_encoder", 0),
            None if None in (steps_peak, runtime) else steps_peak - runtime,
            "trainer RSS during the steps (sampled peak) minus the runtime (RSS after caching)")
        end, cached, ready = marks.get("end", {}), marks.get("cached", {}), marks.get("model_ready", {})
        if end.get("cuda_peak_allocated_bytes") is not None:  # a GPU run: the allocator's own figures
            row("CUDA: caching pass peak (max_memory_allocated)", est["text_encoder_load_gib"] + parts.get("vae", 0),
                cached.get("cuda_peak_allocated_bytes"), "torch.cuda.max_memory_allocated() after caching")
            row("CUDA: training peak (max_memory_allocated)", est["allocated_gib"], end["cuda_peak_allocated_bytes"],
                "torch.cuda.max_memory_allocated() over the run")
            row("CUDA: reserved peak + context (vs estimate total)", est["total_gib"],
                end.get("cuda_peak_reserved_bytes"), "max_memory_reserved(); the CUDA context (~0.5 GiB) is not in it")
            if ready.get("cuda_allocated_bytes") is not None:
                row("CUDA: activations + LoRA state + upcast", parts.get("activations", 0) + parts.get("float8_upcast", 0)
                    + parts.get("lora_train_state", 0), end["cuda_peak_allocated_bytes"] - ready["cuda_allocated_bytes"],
                    "training peak minus allocated with the model ready")
    return rows


def verdict(res: dict[str, Any]) -> dict[str, Any]:
    """Does training fit 24 GiB of host memory, and are the text encoder and the transformer never resident together?"""
    comps = res["model"]["components"]
    te, tr = comps["text_encoder"]["bytes"], comps["transformer"]["bytes"]
    out: dict[str, Any] = {}
    for name in TRAIN_KEYS:
        mk = _marks(res.get(name) or {})
        if not mk.get("end"):
            continue
        peak = mk["end"]["peak_rss_bytes"]
        after_caching = mk["cached"]["rss_bytes"]
        out[name] = {"peak_rss_gib": round(peak / GIB, 2), "fits_24_gib": peak < 24 * GIB,
                     "rss_after_caching_gib": round(after_caching / GIB, 2),
                     # the text encoder's bytes are gone before the transformer loads, and the peak is below both together
                     "never_together": after_caching < 0.5 * te and peak < te + tr}
    return out


PHASE_GROUPS = [("start + preflight + render", ("preflight", "preparing_dataset", "rendering", "loading_model: train:")),
                ("load VAE + text encoder, encode", ("loading_model: VAE", "caching_")),
                ("load transformer + LoRA", ("loading_model: transformer", "loading_model: base", "loading_model: LoRA")),
                ("2 steps", ("training",)), ("save", ("saving",)), ("collect", ("collecting",))]


def phase_summary(r: dict[str, Any]) -> dict[str, float]:
    out = {name: 0.0 for name, _ in PHASE_GROUPS}
    for p in r.get("phases", []):
        for name, prefixes in PHASE_GROUPS:
            if p["phase"].startswith(prefixes):
                out[name] = round(out[name] + p["seconds"], 1)
                break
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = ["| stage | component | estimate GiB | measured GiB | estimate / measured - 1 | measured how |",
             "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in res.get("comparison", []):
        e = "-" if r["estimate_gib"] is None else f"{r['estimate_gib']:.2f}"
        m = "-" if r["measured_gib"] is None else f"{r['measured_gib']:.2f}"
        err = "-" if r["error"] is None else f"{r['error'] * 100:+.1f}%"
        lines.append(f"| {r['stage']} | {r['component']} | {e} | {m} | {err} | {r['how']} |")
    lines += ["", "| stage | status | wall s | steps s | peak RSS trainer GiB (VmHWM) | of it anonymous (sampled) | caching "
              "peak GiB | RSS after caching GiB | RSS model ready GiB | LoRA keys / MB |",
              "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name in TRAIN_KEYS:
        r = res.get(name)
        if not r:
            continue
        mk = _marks(r)
        lora = r.get("lora") or {}
        lines.append(f"| {name} | {r.get('status')} | {r.get('seconds')} | {', '.join(str(s) for s in r.get('step_seconds', []))} | "
                     f"{_gib(mk.get('end', {}).get('peak_rss_bytes'))} | "
                     f"{_gib(max((v for k, v in (r.get('peak_rss_anon_by_process') or {}).items() if k.startswith('trainer')), default=None))} | "
                     f"{_gib(mk.get('cached', {}).get('peak_rss_bytes'))} | "
                     f"{_gib(mk.get('cached', {}).get('rss_bytes'))} | {_gib(mk.get('model_ready', {}).get('rss_bytes'))} | "
                     f"{lora.get('keys', '-')} / {lora.get('bytes', 0) / 1e6:.1f} |")
    g = res.get("generate")
    if g:
        anon = max((g.get("peak_rss_anon_by_process") or {}).values(), default=None)
        lines.append(f"| generate | {g.get('status')} | {g.get('seconds', '-')} | - | "
                     f"{_gib(max((g.get('peak_rss_by_process') or {}).values(), default=None))} | {_gib(anon)} | - | - | - | - |")
    lines += ["", "| stage (seconds) | " + " | ".join(name for name, _ in PHASE_GROUPS) + " |",
              "| --- |" + " ---: |" * len(PHASE_GROUPS)]
    for name in TRAIN_KEYS:
        if res.get(name):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in phase_summary(res[name]).values()) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", choices=("real", "small"), default="real")
    ap.add_argument("--out", type=Path, default=Path("~/.cache/zlt-realsize").expanduser(),
                    help="cache folder: the model folder, datasets, ZLT_HOME and logs (default ~/.cache/zlt-realsize)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    ap.add_argument("--json", type=Path, default=None, help="results (default bench/results/realsize.json at real "
                    "size, OUT/realsize-small.json at small)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when visible, else cpu")
    ap.add_argument("--profile", default="24gb", help="profile of the estimator figures (default 24gb)")
    ap.add_argument("--vram-gb", type=float, default=24.0, help="the GPU memory zlt train plans for (preflight, levers)")
    ap.add_argument("--budget-s", type=float, default=None, help="stop a stage's command after this many seconds")
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--tight-malloc", action="store_true", help="train with glibc returning freed blocks of 1 MB and more "
                    f"at once ({' '.join(f'{k}={v}' for k, v in TIGHT_MALLOC.items())}); results under '<stage>, tight malloc'")
    ap.add_argument("--report", action="store_true", help="only recompute the comparison from --json and print it")
    args = ap.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if bad := [s for s in stages if s not in STAGES]:
        ap.error(f"unknown stage(s) {bad}; known: {', '.join(STAGES)}")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    out = args.out / args.scale
    out.mkdir(parents=True, exist_ok=True)
    json_path = args.json or (REPO / "bench/results/realsize.json" if args.scale == "real" else out / "realsize-small.json")
    res: dict[str, Any] = json.loads(json_path.read_text()) if json_path.is_file() else {}
    res.update({"scale": args.scale, "device": args.device, "host": os.uname().nodename and {
        "cpus": os.cpu_count(), "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1)},
        "settings": {"resolution": args.resolution, "images": args.images, "steps": args.steps, "rank": args.rank,
                     "batch_size": 1, "gradient_checkpointing": True, "profile": args.profile, "vram_gb": args.vram_gb}})
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    home = out / "home"
    model_dir = out / "model"

    def save() -> None:
        res["comparison"] = comparison(res) if res.get("model") else []
        res["verdict"] = verdict(res) if res.get("model") else {}
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(res, indent=2, default=str))

    if args.report:
        save()
        print(markdown(res))
        print(json.dumps(res["verdict"]))
        return 0
    t = time.monotonic()
    res["model"] = write_model(model_dir, args.scale)  # every stage needs it; reused when present
    if "write" in stages:
        res["model"]["stage_seconds"] = round(time.monotonic() - t, 1)
        res["counted_tensor_bytes"] = counted_float8_bytes(model_dir)
    save()
    data = write_dataset(out / "data", args.images, args.resolution)
    spec_path = out / "spec.yaml"
    spec_path.write_text(spec_yaml(model_dir, data, args))
    for name, quantize in (("bf16", "none"), ("float8", "float8")):
        if name in stages:
            key = f"{name}, tight malloc" if args.tight_malloc else name
            res[key] = train_stage(name, quantize, model_dir, spec_path, home, args, logs)
            save()
    if "generate" in stages:
        art = (res.get("bf16") or {}).get("artifact")
        if not art:
            res["generate"] = {"status": "skipped", "why": "no bf16 artifact (run the bf16 stage first)"}
        else:
            comps = res["model"]["components"]
            res["generate"] = generate_stage(Path(art).name, home, args, logs, max(c["bytes"] for c in comps.values()))
        save()
    print(markdown(res))
    print(json.dumps(res["verdict"]))
    print(f"results: {json_path}")
    keys = [f"{s}, tight malloc" if args.tight_malloc and s in ("bf16", "float8") else s for s in stages if s != "write"]
    ok = all((res.get(k) or {}).get("status") in ("succeeded", "skipped") for k in keys)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
