"""musubi's Z-Image tokenizer comes from the hub, whatever the spec says.

At the pinned commit (kohya-ss/musubi-tuner 30c658c, `src/musubi_tuner/zimage/zimage_utils.py` `load_qwen3`)
the text-encoder caching and training scripts call `Qwen2Tokenizer.from_pretrained("Tongyi-MAI/Z-Image",
subfolder="tokenizer")`; no command-line option takes a local tokenizer. So the tokenizer must be in the local
Hugging Face cache (or downloadable at run time). Nothing here touches the network.
"""

from __future__ import annotations

from importlib import metadata

from zlt.preflight.models import ModelFileCheck, _snapshots, hf_cache_dir, hub_offline

MUSUBI_TOKENIZER_REPO = "Tongyi-MAI/Z-Image"  # zimage_utils.ZIMAGE_ID
MUSUBI_TOKENIZER_SUBFOLDER = "tokenizer"
# What Qwen2Tokenizer.from_pretrained reads: its config, and the fast tokenizer.json or the BPE vocab + merges.
_NEEDED = ("tokenizer_config.json",)
_EITHER = (("tokenizer.json",), ("vocab.json", "merges.txt"))


def hf_cli() -> str:
    """The hub command the installed huggingface_hub ships: `hf` since 1.0, `huggingface-cli` before."""
    try:
        major = int(metadata.version("huggingface_hub").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return "hf"
    return "hf" if major >= 1 else "huggingface-cli"


def tokenizer_download_command() -> str:
    return f"{hf_cli()} download {MUSUBI_TOKENIZER_REPO} --include '{MUSUBI_TOKENIZER_SUBFOLDER}/*'"


def check_musubi_tokenizer() -> ModelFileCheck:
    ref = f"{MUSUBI_TOKENIZER_REPO}/{MUSUBI_TOKENIZER_SUBFOLDER}"
    cache = hf_cache_dir()
    for snap in _snapshots(MUSUBI_TOKENIZER_REPO, cache):
        folder = snap / MUSUBI_TOKENIZER_SUBFOLDER
        if all((folder / f).is_file() for f in _NEEDED) and any(all((folder / f).is_file() for f in fs) for fs in _EITHER):
            return ModelFileCheck("musubi tokenizer", ref, "pass", f"in the HF cache ({folder})", path=str(folder))
    cmd = tokenizer_download_command()
    why = "musubi loads it from the Hugging Face hub (no option for a local copy)"
    if hub_offline():
        return ModelFileCheck("musubi tokenizer", ref, "fail", f"not in the HF cache ({cache}) and HF_HUB_OFFLINE=1; {why}",
                              f"{cmd} (with the network on), or unset HF_HUB_OFFLINE")
    return ModelFileCheck("musubi tokenizer", ref, "warn", f"not in the HF cache ({cache}); {why}, so it downloads at "
                          "first run", f"pre-download it: {cmd}", download_gb=0.01)
