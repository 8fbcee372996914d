"""The metric model without a network: the built-in tiny CLIP (`zlt/tiny-clip`), and an uncached hub id refused at
once with the fix (not a minute of hub retries)."""

from __future__ import annotations

import time

import pytest

from zlt.core.errors import EnvNotReadyError
from zlt.preflight.clip_model import TINY_CLIP, check_clip, require_clip


def test_an_uncached_hub_id_with_the_hub_out_of_reach_is_refused_at_once_with_the_fix(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    t0 = time.monotonic()
    c = check_clip("nobody/never-cached-clip")
    assert time.monotonic() - t0 < 5
    assert not c.ok and c.source == "missing" and "cannot be reached" in c.message
    assert "HF_HUB_OFFLINE=1" in c.hint and f"--clip {TINY_CLIP}" in c.hint
    with pytest.raises(EnvNotReadyError, match="cannot be reached"):
        require_clip("nobody/never-cached-clip")
    assert check_clip("nobody/never-cached-clip", probe=False).source == "download"  # doctor: no network asked


def test_the_tiny_clip_is_built_in_and_scores_offline(monkeypatch):
    pytest.importorskip("transformers", reason="needs the [train] extra (transformers)")
    from PIL import Image

    from zlt.eval.clip import ClipScorer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    c = check_clip(TINY_CLIP)
    assert c.ok and c.source == "builtin"
    scorer = ClipScorer(TINY_CLIP)
    assert scorer.images([Image.new("RGB", (40, 24), "red")]).shape == (1, 16)
    assert scorer.texts(["a red house"]).shape == (1, 16)
