"""Issue 26, done when: `zlt dataset caption` on 12 bare images with the tiny captioner writes 12 sidecars and 12
records, a second run captions 0, `--mode all` without `--overwrite` refuses (exit 2); a captioner that is not
downloaded fails fast with the command that downloads it (exit 3)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.caption_fixtures import bare_images

TINY = "zlt/tiny-captioner"


def test_caption_twelve_bare_images_then_nothing_then_refuse(zlt, tmp_path: Path):
    folder = bare_images(tmp_path / "ds", n=12)
    first = zlt("dataset", "caption", str(folder), "--model", TINY, "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    out = json.loads(first.stdout)
    assert out["captioned"] == 12 and len(out["written"]) == 12 and out["tiny"] is True
    sidecars = sorted(folder.glob("*.txt"))
    assert len(sidecars) == 12 and all(p.read_text().strip() for p in sidecars)
    records = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()]
    assert len(records) == 12 and {r["model"] for r in records} == {TINY}
    assert all(r["caption"] == (folder / (Path(r["file"]).stem + ".txt")).read_text().strip() for r in records)
    # the tiny model decodes real words of its vocabulary: deterministic, so a second folder gets the same text
    assert records[0]["revision"].startswith("tiny-florence2") and records[0]["raw"].split()

    second = zlt("dataset", "caption", str(folder), "--model", TINY)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.startswith("captioned 0 image(s)") and "12 already had a caption" in second.stdout
    assert len((folder / "captions.jsonl").read_text().splitlines()) == 12

    refused = zlt("dataset", "caption", str(folder), "--model", TINY, "--mode", "all")
    assert refused.returncode == 2 and "would replace 12 existing caption(s)" in refused.stderr
    assert "--overwrite" in refused.stderr and "Traceback" not in refused.stderr

    missing = zlt("dataset", "caption", str(folder), "--mode", "all", "--overwrite", "--json")
    assert missing.returncode == 3, missing.stdout
    err = json.loads(missing.stdout)
    assert "Florence-2-large: not downloaded" in err["message"] and "download florence-community/" in err["hint"]
