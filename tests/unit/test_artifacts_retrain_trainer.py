"""`zlt retrain` on the built-in trainer, tiny model on CPU: 20 steps + 20 more equals 40 in one go (resume mode),
the cosine schedule of the total is continued, and a warm start begins exactly at the parent's weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.unit.test_trainer_fixtures import make_images, tiny_config  # noqa: E402
from tests.unit.test_trainer_loop import lora, run  # noqa: E402
from zlt.artifacts.warmstart import (  # noqa: E402
    apply_warm_start,
    init_file,
    resume_sources,
    write_init_lora,
    write_retrain_file,
)

SECTIONS = dict(output={"save_every": 100, "keep": 1})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("retrain") / "ds", n=4)


def _loss_log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "loss_log.jsonl").read_text().splitlines()]


def _continue(tmp_path: Path, data: Path, scheduler: str) -> tuple[Path, Path]:
    """A 40-step run, and a 20-step parent continued by 20 steps through the retrain seeding."""
    cache = {"dir": str(tmp_path / "cache")}
    tr = {"scheduler": scheduler, "warmup_steps": 3}
    full, _, _ = run(tiny_config(tmp_path / "full", data, training={**tr, "max_steps": 40}, cache=cache, **SECTIONS))
    parent_job = tmp_path / "parent"
    run(tiny_config(parent_job, data, training={**tr, "max_steps": 20}, cache=cache,
                    output={"dir": str(parent_job / "output"), "save_every": 100, "keep": 1}))
    src = resume_sources(parent_job, "lightning", "tinytest", 20)
    assert src is not None, "the parent's final resume state is found in its job folder"
    child_job = tmp_path / "child"
    write_retrain_file(child_job, {"parent_id": "p", "mode": "resume", "copy": src["copy"], "base_step": 20})
    warm = apply_warm_start(child_job, "lightning", child_job / "output")
    assert warm.resume and warm.init_lora is None
    child, events, outcome = run(tiny_config(child_job, data, training={**tr, "max_steps": 40}, cache=cache,
                                             output={"dir": str(child_job / "output"), "save_every": 100, "keep": 1,
                                                     "resume": True}))
    assert outcome == "finished" and child.step == 40
    assert any(e["type"] == "resumed" and e["step"] == 20 for e in events)
    return full.out, child.out


@pytest.mark.slow
def test_20_plus_20_steps_equals_40_steps(tmp_path: Path, data: Path):
    full, child = _continue(tmp_path, data, "constant")
    a, b = lora(full / "tinytest.safetensors"), lora(child / "tinytest.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)
    la, lb = _loss_log(full), _loss_log(child)
    assert [r["loss"] for r in lb if r["step"] > 20] == pytest.approx([r["loss"] for r in la if r["step"] > 20], rel=1e-4)


@pytest.mark.slow
def test_more_steps_continue_the_cosine_schedule_of_the_total(tmp_path: Path, data: Path):
    full, child = _continue(tmp_path, data, "cosine")
    la = {r["step"]: r["lr"] for r in _loss_log(full)}
    lb = {r["step"]: r["lr"] for r in _loss_log(child) if r["step"] > 20}
    assert sorted(lb) == list(range(21, 41))
    assert [lb[s] for s in lb] == pytest.approx([la[s] for s in lb], rel=1e-9)  # steps 21..40 of a 40-step cosine


def test_warm_start_begins_at_the_parents_weights(tmp_path: Path, data: Path):
    cache = {"dir": str(tmp_path / "cache")}
    parent, _, _ = run(tiny_config(tmp_path / "p", data, training={"max_steps": 5}, cache=cache, **SECTIONS))
    # the registry keeps the LoRA with alpha folded in (diffusers layout); the child trains at another alpha
    from zlt.lora.convert import effective_deltas, read_lora

    init = write_init_lora(parent.out / "tinytest.safetensors", init_file(tmp_path / "child", "lightning"),
                           backend="lightning", rank=4, alpha=2)
    cfg = tiny_config(tmp_path / "c", data, lora={"rank": 4, "alpha": 2}, training={"max_steps": 1}, cache=cache,
                      output={"init_lora": str(init), "save_every": 100, "keep": 1})
    import io

    from zlt.trainer.emit import EventWriter
    from zlt.trainer.loop import Trainer

    t = Trainer(cfg, EventWriter(io.StringIO(), interval_s=0.0))
    t.setup()
    from zlt.trainer.checkpoint import save_lora

    before = save_lora(tmp_path / "before.safetensors", t.transformer, dtype=torch.float32, step=0, epoch=0, extra={})
    want = effective_deltas(read_lora(parent.out / "tinytest.safetensors")[0])
    got_w, _ = read_lora(before)
    got_w.modules = {m: type(v)(down=v.down, up=v.up, alpha=2.0) for m, v in got_w.modules.items()}
    got = effective_deltas(got_w)
    assert want.keys() == got.keys()
    for m in want:
        assert got[m] == pytest.approx(want[m], rel=1e-5, abs=1e-7)
