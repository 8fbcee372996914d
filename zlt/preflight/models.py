"""Can the trainer find its model files? A local path exists, or a hub id is in the HF cache, or may be
downloaded (not with HF_HUB_OFFLINE=1). Nothing here touches the network.

musubi-tuner reads single local files only (--dit, --vae, --text_encoder, and the turbo adapter as
--base_weights); ai-toolkit and the built-in trainer take a diffusers folder or a hub id.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zlt import backends
from zlt.preflight.report import Status
from zlt.spec.models import JobSpec

# Z-Image-Turbo's diffusers repo: transformer 12.3 GB + Qwen3 text encoder 8.0 GB + VAE and tokenizer.
BASE_DOWNLOAD_GB = 19.2
ADAPTER_DOWNLOAD_GB = 0.17
# Where musubi's single files come from (kohya-ss/musubi-tuner docs/zimage.md: Comfy-Org's split files).
_MUSUBI_SOURCE = {
    "dit": "Comfy-Org's Z-Image split_files/diffusion_models/ (De-Turbo: ostris/Z-Image-De-Turbo)",
    "vae": "Comfy-Org's Z-Image split_files/vae/",
    "text_encoder": "Comfy-Org's Z-Image split_files/text_encoders/",
    "adapter": "ostris/zimage_turbo_training_adapter",
}
_MUSUBI_DEFAULTS = {
    "turbo": "z_image_turbo_bf16.safetensors",
    "deturbo": "z_image_de_turbo_v1_bf16.safetensors",
    "base": "z_image_bf16.safetensors",
    "vae": "ae.safetensors",
    "text_encoder": "qwen_3_4b.safetensors",
}
_GIB = float(1 << 30)


@dataclass
class ModelFileCheck:
    what: str  # "base model", "training adapter", "musubi dit", ...
    ref: str  # what the spec names
    status: Status
    message: str
    fix: str = ""
    path: str | None = None
    size_gb: float | None = None
    download_gb: float = 0.0  # what the first run will download into the HF cache

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hub_offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hf_cache_dir() -> Path:
    """The hub cache huggingface_hub uses: HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > HF_HOME/hub > XDG cache."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "huggingface" / "hub"


def _snapshots(repo_id: str, cache: Path) -> list[Path]:
    folder = cache / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    if not folder.is_dir():
        return []
    snaps = [p for p in folder.iterdir() if p.is_dir()]
    ref = folder.parent / "refs" / "main"
    main = ref.read_text(encoding="utf-8").strip() if ref.is_file() else None
    return sorted(snaps, key=lambda p: (p.name != main, -p.stat().st_mtime))


def _size_gb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / _GIB
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file():
                total += p.stat().st_size  # follows the cache's symlinks into blobs/
        except OSError:
            continue
    return total / _GIB


def diffusers_folder_problems(folder: Path) -> list[str]:
    """What is missing from a diffusers model folder (model_index.json, component folders, weight shards)."""
    index = folder / "model_index.json"
    if not index.is_file():
        return ["model_index.json is missing"]
    try:
        components = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return [f"model_index.json cannot be read ({e})"]
    problems = []
    for name, value in components.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        sub = folder / name
        if not sub.is_dir():
            problems.append(f"{name}/ is missing")
            continue
        for shard_index in sub.glob("*.safetensors.index.json"):
            try:
                shards = set(json.loads(shard_index.read_text(encoding="utf-8")).get("weight_map", {}).values())
            except (OSError, json.JSONDecodeError):
                problems.append(f"{name}/{shard_index.name} cannot be read")
                continue
            problems.extend(f"{name}/{s} is missing" for s in sorted(shards) if not (sub / s).is_file())
    return problems


def _looks_local(ref: str) -> bool:
    """A hub id is exactly `owner/name`; anything else (or an existing path) is a local path."""
    return ref.startswith(("/", ".", "~")) or ref.count("/") != 1 or Path(ref).expanduser().exists()


def check_base_model(spec: JobSpec) -> ModelFileCheck:
    base = spec.model.base
    ref = base.name
    if spec.is_tiny:
        return ModelFileCheck("base model", ref, "pass", "the built-in tiny test model (built in memory)")
    if base.source == "local" or _looks_local(ref):
        path = Path(ref).expanduser()
        if not path.exists():
            return ModelFileCheck("base model", ref, "fail", f"{path} does not exist",
                                  "fix model.base.name, or use the hub id Tongyi-MAI/Z-Image-Turbo")
        if path.is_file():
            return ModelFileCheck("base model", ref, "pass", f"single file {path}", path=str(path),
                                  size_gb=_size_gb(path))
        problems = diffusers_folder_problems(path)
        if problems:
            return ModelFileCheck("base model", ref, "fail", f"{path} is not a complete diffusers folder: "
                                  + "; ".join(problems[:3]), "re-download it, or point model.base.name at the hub id",
                                  path=str(path))
        return ModelFileCheck("base model", ref, "pass", f"diffusers folder {path}", path=str(path),
                              size_gb=_size_gb(path))
    if base.source == "modelscope":
        return _check_modelscope(ref)
    cache = hf_cache_dir()
    for snap in _snapshots(ref, cache):
        problems = diffusers_folder_problems(snap)
        if not problems:
            return ModelFileCheck("base model", ref, "pass", f"in the HF cache ({snap})", path=str(snap),
                                  size_gb=_size_gb(snap))
        partial = "; ".join(problems[:2])
        if hub_offline():
            return ModelFileCheck("base model", ref, "fail", f"only partly in the HF cache ({partial}) and "
                                  "HF_HUB_OFFLINE=1", f"{hub_cli()} download {ref} (with the network on)",
                                  path=str(snap))
        return ModelFileCheck("base model", ref, "warn", f"partly in the HF cache ({partial}); the rest downloads "
                              "at first run", f"{hub_cli()} download {ref}", path=str(snap),
                              download_gb=BASE_DOWNLOAD_GB / 2)
    return _not_cached("base model", ref, cache, BASE_DOWNLOAD_GB)


def hub_cli() -> str:
    """The download command the installed huggingface_hub ships: `hf` from 0.34 on (1.x dropped `huggingface-cli`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        parts = version("huggingface_hub").split(".")
        major, minor = int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (PackageNotFoundError, ValueError, IndexError):
        return "hf"
    return "hf" if (major, minor) >= (0, 34) else "huggingface-cli"


def _not_cached(what: str, ref: str, cache: Path, size_gb: float, filename: str | None = None) -> ModelFileCheck:
    endpoint = os.environ.get("HF_ENDPOINT")
    via = f" via {endpoint}" if endpoint else ""
    cmd = f"{hub_cli()} download {ref}" + (f" {filename}" if filename else "")
    if hub_offline():
        return ModelFileCheck(what, ref, "fail", f"not in the HF cache ({cache}) and HF_HUB_OFFLINE=1",
                              f"{cmd} with the network on, or unset HF_HUB_OFFLINE")
    return ModelFileCheck(what, ref, "warn", f"not in the HF cache ({cache}); about {size_gb:.1f} GiB will be "
                          f"downloaded{via} at first run", f"pre-download it: {cmd}", download_gb=size_gb)


def _check_modelscope(ref: str) -> ModelFileCheck:
    root = Path(os.environ.get("MODELSCOPE_CACHE") or "~/.cache/modelscope/hub").expanduser()
    for cand in (root / "models" / ref, root / ref):
        if cand.is_dir() and not diffusers_folder_problems(cand):
            return ModelFileCheck("base model", ref, "pass", f"in the ModelScope cache ({cand})", path=str(cand),
                                  size_gb=_size_gb(cand))
    return ModelFileCheck("base model", ref, "warn", f"not in the ModelScope cache ({root}); it downloads at first run",
                          f"modelscope download --model {ref}", download_gb=BASE_DOWNLOAD_GB)


def check_adapter(spec: JobSpec) -> ModelFileCheck | None:
    ref = spec.adapter_path()
    if ref is None:
        return None
    path = Path(ref).expanduser()
    if path.exists() or ref.startswith(("/", ".", "~")):
        if path.is_file():
            return ModelFileCheck("training adapter", ref, "pass", f"local file {path}", path=str(path),
                                  size_gb=_size_gb(path))
        return ModelFileCheck("training adapter", ref, "fail", f"{path} does not exist",
                              "fix model.base.training_adapter, or use 'auto' for ostris's v2 adapter")
    parts = ref.split("/")
    if len(parts) < 3:
        return ModelFileCheck("training adapter", ref, "fail", "not a local file and not owner/repo/file.safetensors",
                              "use a local .safetensors path or owner/repo/file.safetensors")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    cache = hf_cache_dir()
    for snap in _snapshots(repo, cache):
        if (snap / filename).is_file():
            return ModelFileCheck("training adapter", ref, "pass", f"in the HF cache ({snap / filename})",
                                  path=str(snap / filename), size_gb=_size_gb(snap / filename))
    return _not_cached("training adapter", repo, cache, ADAPTER_DOWNLOAD_GB, filename)


def musubi_files(spec: JobSpec, home: Path) -> dict[str, Path]:
    """The single files musubi reads: the spec's, else the defaults under <ZLT_HOME>/models/z-image."""
    base = spec.model.base
    folder = home / "models" / "z-image"
    named = {"dit": base.dit, "vae": base.vae, "text_encoder": base.text_encoder}
    default = {"dit": _MUSUBI_DEFAULTS[base.variant], "vae": _MUSUBI_DEFAULTS["vae"],
               "text_encoder": _MUSUBI_DEFAULTS["text_encoder"]}
    out = {k: Path(v).expanduser() if v else folder / default[k] for k, v in named.items()}
    adapter = spec.adapter_path()
    if adapter:
        local = Path(adapter).expanduser()
        out["adapter"] = local if local.exists() or adapter.startswith(("/", ".", "~")) else folder / Path(adapter).name
    return out


def check_musubi_files(spec: JobSpec, home: Path) -> list[ModelFileCheck]:
    out = []
    for key, path in musubi_files(spec, home).items():
        field = f"model.base.{key}" if key != "adapter" else "model.base.training_adapter"
        if path.is_file():
            out.append(ModelFileCheck(f"musubi {key}", str(path), "pass", f"{_size_gb(path):.1f} GiB",
                                      path=str(path), size_gb=_size_gb(path)))
        else:
            out.append(ModelFileCheck(f"musubi {key}", str(path), "fail",
                                      "missing (musubi reads local files only)",
                                      f"put {path.name} there (from {_MUSUBI_SOURCE[key]}), or set {field}"))
    return out


def check_model_files(spec: JobSpec, backend: str, home: Path) -> list[ModelFileCheck]:
    """Every model file the backend will need, each a pass / warn / fail with a one-line fix."""
    if backends.get(backend).reads_weight_files and not spec.is_tiny:
        return check_musubi_files(spec, home)
    out = [check_base_model(spec)]
    adapter = check_adapter(spec)
    if adapter is not None:
        out.append(adapter)
    return out
