"""Z-Image LoRA key formats: detect, parse into one neutral form, render into any other.

The neutral form is a map from the diffusers module path (`layers.0.attention.to_out.0`) to (down, up, alpha),
with alpha None meaning "alpha == rank" (scale 1). Formats (what diffusers' Z-Image loader accepts for each):

| format     | keys                                                         | alpha                              |
| ---------- | ------------------------------------------------------------ | ---------------------------------- |
| diffusers  | `transformer.<module>.lora_A.weight` / `.lora_B.weight`      | none: folded into the weights      |
| ai-toolkit | `diffusion_model.<module>.lora_A.weight` / `.lora_B.weight`  | none (ai-toolkit saves alpha=rank) |
| comfyui    | `diffusion_model.<module>.lora_A.weight` / `.lora_B.weight`  | `diffusion_model.<module>.alpha`   |
| kohya      | `lora_unet_<module_with_underscores>.lora_down.weight` / `.lora_up.weight` | `.alpha`             |

diffusers' Z-Image loader sends any file with `.alpha` keys through its non-diffusers converter, which would turn
`transformer.x` into `transformer.transformer.x`; so the diffusers writer folds alpha/rank into the weights instead
(sqrt on each side, as musubi's converter does). A diffusers file that carries peft's `lora_adapter_metadata`
(lora_alpha != r) is read with that scale.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from zlt.core.errors import BadInputError
from zlt.lora.safetensors_io import FLOAT_DTYPES, RawTensor, read_file

FORMATS: tuple[str, ...] = ("diffusers", "ai-toolkit", "comfyui", "kohya")
# What `zlt artifacts export --format` accepts; musubi writes kohya keys.
EXPORT_FORMATS: dict[str, str] = {
    "diffusers": "diffusers", "comfyui": "comfyui", "kohya": "kohya", "musubi": "kohya", "ai-toolkit": "ai-toolkit",
}
PREFIXES = {"diffusers": "transformer.", "ai-toolkit": "diffusion_model.", "comfyui": "diffusion_model.", "kohya": "lora_unet_"}
ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # peft's LoraConfig, written by diffusers' save_lora_weights

# Z-Image module names that contain underscores; kohya keys flatten dots to underscores, so these are the
# words that must be glued back together. Longest first.
_COMPOUNDS: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (tuple(w.split("_")) for w in (
            "all_final_layer", "all_x_embedder", "noise_refiner", "context_refiner", "siglip_refiner",
            "adaLN_modulation", "feed_forward", "cap_embedder", "t_embedder", "x_embedder", "final_layer",
            "to_q", "to_k", "to_v", "to_out",
        )),
        key=len, reverse=True,
    )
)
_COMPOUND_NAMES = {"_".join(c) for c in _COMPOUNDS}
_WEIGHT_RE = re.compile(r"^(?P<mod>.+?)\.(?P<kind>lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.weight$")
_ALPHA_RE = re.compile(r"^(?P<mod>.+)\.alpha$")


@dataclass
class LoraModule:
    down: RawTensor  # lora_A / lora_down, shape (rank, in_features)
    up: RawTensor  # lora_B / lora_up, shape (out_features, rank)
    alpha: float | None = None  # None: alpha == rank

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.rank


@dataclass
class LoraWeights:
    """A LoRA in neutral form: diffusers module path -> module."""

    modules: dict[str, LoraModule] = field(default_factory=dict)
    source_format: str = "diffusers"

    @property
    def rank(self) -> int:
        return Counter(m.rank for m in self.modules.values()).most_common(1)[0][0] if self.modules else 0

    @property
    def alpha(self) -> float:
        """The most common alpha (rank when the file stores none)."""
        alphas = [m.alpha if m.alpha is not None else float(m.rank) for m in self.modules.values()]
        return Counter(alphas).most_common(1)[0][0] if alphas else 0.0

    @property
    def dtype(self) -> str:
        return Counter(m.up.dtype for m in self.modules.values()).most_common(1)[0][0] if self.modules else "F32"


def normalize_format(fmt: str) -> str:
    key = fmt.strip().lower()
    if key not in EXPORT_FORMATS:
        raise BadInputError(
            f"unknown LoRA key format {fmt!r}", hint=f"use one of: {', '.join(sorted(EXPORT_FORMATS))}"
        )
    return EXPORT_FORMATS[key]


def detect_format(keys: Iterable[str]) -> str:
    """The key format of a LoRA state dict: diffusers, ai-toolkit, comfyui, kohya or peft (bare module keys)."""
    keys = list(keys)
    if not keys:
        raise BadInputError("the file holds no tensors", hint="it is not a LoRA")
    families = set()
    for k in keys:
        if k.startswith("lora_unet_"):
            families.add("kohya")
        elif k.startswith("diffusion_model."):
            families.add("diffusion_model")
        elif k.startswith("transformer."):
            families.add("diffusers")
        elif k.startswith("base_model.model."):
            families.add("peft")
        elif _WEIGHT_RE.match(k) or _ALPHA_RE.match(k):
            families.add("peft")
        else:
            raise BadInputError(
                f"unrecognised LoRA key {k!r}",
                hint="zlt reads Z-Image LoRAs in diffusers, ai-toolkit, comfyui and musubi/kohya key formats",
            )
    if len(families) > 1:
        raise BadInputError(f"the file mixes key formats ({', '.join(sorted(families))})", hint="it is not one LoRA")
    fam = families.pop()
    if fam == "diffusion_model":
        return "comfyui" if any(k.endswith(".alpha") for k in keys) else "ai-toolkit"
    return fam


def kohya_module_name(module: str) -> str:
    """`layers.0.attention.to_out.0` -> `layers_0_attention_to_out_0` (fails where the way back is ambiguous)."""
    for part in module.split("."):
        if "_" in part and part not in _COMPOUND_NAMES:
            raise BadInputError(
                f"module {module!r} cannot be written as a kohya key: '{part}' is not a known Z-Image name",
                hint="export it as diffusers or comfyui instead",
            )
    return module.replace(".", "_")


def module_from_kohya(name: str) -> str:
    """`layers_0_attention_to_out_0` -> `layers.0.attention.to_out.0`."""
    words = name.split("_")
    out: list[str] = []
    i = 0
    while i < len(words):
        for comp in _COMPOUNDS:
            if tuple(words[i:i + len(comp)]) == comp:
                out.append("_".join(comp))
                i += len(comp)
                break
        else:
            out.append(words[i])
            i += 1
    return ".".join(out)


def _strip(key: str) -> str:
    for prefix in ("transformer.", "diffusion_model.", "base_model.model.", "lora_unet_"):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _scalar(t: RawTensor, key: str) -> float:
    if t.numel != 1:
        raise BadInputError(f"{key}: alpha must be a single number, found shape {list(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise BadInputError(f"{key}: alpha must be a float tensor, found {t.dtype}")
    return float(t.to_float32().reshape(-1)[0])


def _peft_alphas(metadata: dict[str, str] | None) -> tuple[float | None, dict[str, float], bool] | None:
    """(lora_alpha, alpha_pattern, use_rslora) from peft's adapter metadata, or None when absent."""
    raw = (metadata or {}).get(ADAPTER_METADATA_KEY)
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError:
        raise BadInputError(f"{ADAPTER_METADATA_KEY} in the header is not valid JSON") from None
    cfg = {k.removeprefix("transformer."): v for k, v in cfg.items()}
    alpha = cfg.get("lora_alpha")
    pattern = cfg.get("alpha_pattern") or {}
    return (float(alpha) if alpha is not None else None), {k: float(v) for k, v in pattern.items()}, bool(
        cfg.get("use_rslora")
    )


def _pattern_alpha(module: str, pattern: dict[str, float]) -> float | None:
    # peft matches pattern keys as a suffix of the module path on a dot boundary
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return None


def parse_lora(tensors: dict[str, RawTensor], metadata: dict[str, str] | None = None) -> LoraWeights:
    """Any supported key format -> neutral form. Unknown keys are an error, never silently dropped."""
    fmt = detect_format(tensors.keys())
    downs: dict[str, RawTensor] = {}
    ups: dict[str, RawTensor] = {}
    alphas: dict[str, float] = {}
    for key, t in tensors.items():
        rest = _strip(key)
        m = _WEIGHT_RE.match(rest)
        if m:
            mod, kind = m["mod"], m["kind"]
            mod = module_from_kohya(mod) if fmt == "kohya" else mod
            (downs if kind in ("lora_A", "lora_down") else ups)[mod] = t
            continue
        m = _ALPHA_RE.match(rest)
        if m:
            mod = module_from_kohya(m["mod"]) if fmt == "kohya" else m["mod"]
            alphas[mod] = _scalar(t, key)
            continue
        raise BadInputError(f"unsupported LoRA key {key!r}", hint="only lora_A/lora_B (lora_down/lora_up) and alpha")
    peft = _peft_alphas(metadata) if fmt in ("diffusers", "peft") else None
    weights = LoraWeights(source_format=fmt)
    for mod in sorted(set(downs) | set(ups) | set(alphas)):
        if mod not in downs or mod not in ups:
            missing = "down (lora_A)" if mod not in downs else "up (lora_B)"
            raise BadInputError(f"LoRA module {mod!r} has no {missing} weight", hint="the file is incomplete")
        down, up = downs[mod], ups[mod]
        if len(down.shape) != 2 or len(up.shape) != 2 or down.shape[0] != up.shape[1]:
            raise BadInputError(
                f"LoRA module {mod!r}: shapes {list(down.shape)} and {list(up.shape)} do not form a rank-r update"
            )
        alpha = alphas.get(mod)
        if alpha is None and peft is not None:
            lora_alpha, pattern, rslora = peft
            alpha = _pattern_alpha(mod, pattern) or lora_alpha
            if alpha is not None and rslora:  # peft scales by alpha/sqrt(r); express it as alpha'/r
                alpha = alpha * math.sqrt(down.shape[0])
        weights.modules[mod] = LoraModule(down=down, up=up, alpha=alpha)
    if not weights.modules:
        raise BadInputError("the file holds no LoRA modules")
    return weights


def _fold(module: LoraModule) -> tuple[RawTensor, RawTensor]:
    """Weights with alpha/rank multiplied in, so a loader that assumes alpha == rank computes the same update."""
    if module.alpha is None or module.alpha == module.rank:
        return module.down, module.up
    for t in (module.down, module.up):
        if t.dtype not in FLOAT_DTYPES:
            raise BadInputError(f"cannot fold alpha into {t.dtype} weights", hint="export as comfyui or kohya")
    s = math.sqrt(module.scale)
    down = RawTensor.from_float32(module.down.to_float32() * s, module.down.dtype)
    up = RawTensor.from_float32(module.up.to_float32() * s, module.up.dtype)
    return down, up


def _alpha_tensor(module: LoraModule) -> RawTensor:
    import numpy as np

    alpha = module.alpha if module.alpha is not None else float(module.rank)
    return RawTensor.from_float32(np.asarray(alpha, dtype=np.float32), "F32")


def render_lora(weights: LoraWeights, fmt: str) -> dict[str, RawTensor]:
    """Neutral form -> the tensors of one key format."""
    fmt = normalize_format(fmt)
    out: dict[str, RawTensor] = {}
    for mod, module in weights.modules.items():
        if fmt in ("diffusers", "ai-toolkit"):
            down, up = _fold(module)
            base = PREFIXES[fmt] + mod
            out[f"{base}.lora_A.weight"], out[f"{base}.lora_B.weight"] = down, up
        elif fmt == "comfyui":
            base = PREFIXES[fmt] + mod
            out[f"{base}.lora_A.weight"], out[f"{base}.lora_B.weight"] = module.down, module.up
            out[f"{base}.alpha"] = _alpha_tensor(module)
        else:
            base = PREFIXES["kohya"] + kohya_module_name(mod)
            out[f"{base}.lora_down.weight"], out[f"{base}.lora_up.weight"] = module.down, module.up
            out[f"{base}.alpha"] = _alpha_tensor(module)
    return out


def read_lora(path: Path) -> tuple[LoraWeights, dict[str, str]]:
    """Parse a LoRA .safetensors file (any supported key format). Errors name the file."""
    tensors, metadata = read_file(path)
    try:
        return parse_lora(tensors, metadata), metadata
    except BadInputError as e:
        raise BadInputError(f"{path}: {e.message}", hint=e.hint) from None


def effective_deltas(weights: LoraWeights) -> dict[str, object]:
    """module -> scale * up @ down in float32: what a loader adds to each weight (for comparing formats)."""
    return {mod: m.scale * (m.up.to_float32() @ m.down.to_float32()) for mod, m in weights.modules.items()}
