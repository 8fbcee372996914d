"""Issue 19.1: musubi's Z-Image text encoder step loads its tokenizer from the hub (no local-path option at the pinned
commit: kohya-ss/musubi-tuner src/musubi_tuner/zimage/zimage_utils.py, `ZIMAGE_ID = "Tongyi-MAI/Z-Image"`,
`Qwen2Tokenizer.from_pretrained(tokenizer_id, subfolder="tokenizer")`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_preflight_checks import by_name, card, run, spec
from zlt.preflight.gpu import StaticProbe
from zlt.preflight.tokenizer import (
    MUSUBI_TOKENIZER_REPO,
    check_musubi_tokenizer,
    hf_cli,
    tokenizer_download_command,
)


def _cache_tokenizer(cache: Path, files=("tokenizer_config.json", "vocab.json", "merges.txt")) -> Path:
    repo = cache / "models--Tongyi-MAI--Z-Image"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("rev1")
    folder = repo / "snapshots" / "rev1" / "tokenizer"
    folder.mkdir(parents=True)
    for f in files:
        (folder / f).write_text("{}")
    return folder


def test_upstream_repo_id():
    assert MUSUBI_TOKENIZER_REPO == "Tongyi-MAI/Z-Image"  # not -Turbo: musubi's zimage_utils.ZIMAGE_ID


def test_installed_hub_cli_is_named():
    import huggingface_hub

    assert hf_cli() == ("hf" if int(huggingface_hub.__version__.split(".")[0]) >= 1 else "huggingface-cli")
    assert tokenizer_download_command() == f"{hf_cli()} download Tongyi-MAI/Z-Image --include 'tokenizer/*'"


def test_cached_offline_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert check_musubi_tokenizer().status == "warn"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = check_musubi_tokenizer()
    assert missing.status == "fail" and "HF_HUB_OFFLINE=1" in missing.message
    assert missing.fix.startswith(tokenizer_download_command())
    _cache_tokenizer(cache, files=("tokenizer_config.json",))  # half a tokenizer is no tokenizer
    assert check_musubi_tokenizer().status == "fail"
    (cache / "models--Tongyi-MAI--Z-Image" / "snapshots" / "rev1" / "tokenizer" / "tokenizer.json").write_text("{}")
    assert check_musubi_tokenizer().status == "pass"


def test_preflight_of_a_musubi_job_checks_the_tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = run(spec(tmp_path, **{"training.backend": "musubi"}), StaticProbe([card(0, "NVIDIA L40S", 48)]))
    tok = [c for c in by_name(r, "model") if "musubi tokenizer" in c.message]
    assert tok and tok[0].status == "fail" and "download Tongyi-MAI/Z-Image" in tok[0].fix
    assert not r.ok
