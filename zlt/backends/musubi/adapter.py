"""The turbo training adapter in musubi's own LoRA key format.

musubi's Z-Image trainer hands `--base_weights` to its LoRA loader unconverted (its `convert_weight_keys` is the
identity; the diffusers/ai-toolkit conversion exists only in the HunyuanVideo trainer), and that loader only knows
`lora_unet_<module_with_underscores>.lora_down/.lora_up/.alpha` keys (musubi `networks/lora.py`). The adapter ships
in ai-toolkit's `diffusion_model.<module>.lora_A/lora_B` format, so merged as is it creates 0 modules and musubi
trains raw Turbo. The musubi render adds a step that runs `python -m zlt.backends.musubi.adapter`: it converts the
file once per content hash into `<cache>/adapters/` and links it to the path the train step names.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from zlt.core.errors import BadInputError
from zlt.core.fsutil import sha256_file
from zlt.lora.convert import (
    _ALPHA_RE,
    _WEIGHT_RE,
    _strip,
    detect_format,
    module_from_kohya,
    read_lora,
    render_lora,
)
from zlt.lora.safetensors_io import read_file, read_header, write_file

CONVERTED_NAME = "turbo_adapter_musubi.safetensors"
_BLOCKS = {"layers", "noise_refiner", "context_refiner"}
_CHILDREN = {
    "attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0",
    "feed_forward.w1", "feed_forward.w2", "feed_forward.w3", "adaLN_modulation.0",
}
_MODULE_RE = re.compile(r"^(?P<block>[a-z_]+)\.(?P<idx>\d+)\.(?P<child>.+)$")


def unmapped_modules(modules: list[str]) -> list[str]:
    """Module paths (diffusers names) that are not a Linear of a Z-Image transformer block, i.e. that musubi's
    loader would skip."""
    bad = []
    for mod in modules:
        m = _MODULE_RE.match(mod)
        if not m or m["block"] not in _BLOCKS or m["child"] not in _CHILDREN:
            bad.append(mod)
    return bad


def check_adapter_keys(keys: list[str], source: str) -> int:
    """Raise unless every LoRA module named by `keys` (any supported key format) maps onto a Z-Image transformer
    module; return the number of modules. Reads names only, so it can run on a header."""

    fmt = detect_format(keys)
    modules = set()
    for key in keys:
        rest = _strip(key)
        m = _WEIGHT_RE.match(rest) or _ALPHA_RE.match(rest)
        if m is None:
            raise BadInputError(f"{source}: unsupported LoRA key {key!r}", hint="the adapter is not a Z-Image LoRA")
        modules.add(module_from_kohya(m["mod"]) if fmt == "kohya" else m["mod"])
    if not modules:
        raise BadInputError(f"{source}: the adapter holds no LoRA modules")
    bad = unmapped_modules(sorted(modules))
    if bad:
        raise BadInputError(
            f"{source}: {len(bad)} of {len(modules)} adapter modules are not Z-Image transformer modules "
            f"(e.g. {bad[0]!r}); musubi would merge none of them",
            hint="model.base.training_adapter must be a Z-Image LoRA (ai-toolkit, diffusers, comfyui or musubi keys)",
        )
    return len(modules)


def check_adapter_file(path: Path) -> int:
    """The render-time check: the adapter's keys (header only) map onto the model's modules."""

    return check_adapter_keys(list(read_header(path).tensors), str(path))


def convert_adapter(src: Path, cache: Path, out: Path) -> tuple[Path, bool]:
    """Convert `src` to musubi keys, cached by the source's content hash; `out` becomes a link (or copy) of the
    cached file. Returns (cached file, whether it was converted now)."""

    if not src.is_file():
        raise BadInputError(f"{src}: training adapter not found",
                            hint="download it (hf download ostris/zimage_turbo_training_adapter) or set "
                                 "model.base.training_adapter to a local file")
    digest = sha256_file(src)
    cached = cache / f"{digest}.musubi.safetensors"
    made = False
    if not cached.is_file():
        weights, _ = read_lora(src)
        check_adapter_keys([f"transformer.{m}.lora_A.weight" for m in weights.modules], str(src))
        write_file(cached, render_lora(weights, "kohya"), {"zlt.source_sha256": digest, "zlt.source": src.name})
        made = True
    tensors, _ = read_file(cached)
    check_adapter_keys(list(tensors), str(cached))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(cached, tmp)
    except OSError:
        import shutil

        shutil.copyfile(cached, tmp)
    os.replace(tmp, out)
    return cached, made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zlt.backends.musubi.adapter", description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="the training adapter (any Z-Image LoRA key format)")
    ap.add_argument("--cache", type=Path, required=True, help="folder of converted adapters, keyed by content hash")
    ap.add_argument("--out", type=Path, required=True, help="where the train step expects the converted file")
    args = ap.parse_args(argv)
    try:
        cached, made = convert_adapter(args.src, args.cache, args.out)
    except BadInputError as e:
        print(f"zlt: error: {e.message}" + (f" ({e.hint})" if e.hint else ""), file=sys.stderr)
        return 2
    print(f"zlt: training adapter in musubi keys: {args.out} ({'converted' if made else 'cached'}: {cached.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
