"""The training loop in-process on the tiny model: options, sampling, stop requests, determinism."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.unit.test_trainer_fixtures import make_images, tiny_config  # noqa: E402
from zlt.trainer.emit import EventWriter  # noqa: E402
from zlt.trainer.loop import StopFlag, Trainer  # noqa: E402


def run(cfg, stop: StopFlag | None = None, stop_reason: str = "") -> tuple[Trainer, list[dict], str]:
    buf = io.StringIO()
    t = Trainer(cfg, EventWriter(buf, interval_s=0.0), stop)
    t.setup()
    if stop_reason:
        stop.set(stop_reason)  # as the signal handler does, after set-up
    outcome = t.run()
    return t, [json.loads(x) for x in buf.getvalue().splitlines()], outcome


def lora(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("trainer_loop") / "ds", n=5)


def test_all_the_options_together(tmp_path: Path, data: Path):
    cfg = tiny_config(
        tmp_path, data,
        lora={"rank": 2, "alpha": 1, "dropout": 0.1, "target_modules": ["attention.to_q", "feed_forward.w1", "adaLN_modulation"]},
        data={"horizontal_flip": True, "color_jitter": True, "color_jitter_variants": 2, "caption_dropout": 0.5,
              "repeats": 2, "resolution": 32},
        training={"max_steps": 6, "gradient_accumulation": 2, "batch_size": 3, "timestep_type": "weighted",
                  "scheduler": "linear", "warmup_steps": 2, "gradient_checkpointing": True, "max_grad_norm": 0.5},
        output={"save_every": 3, "keep": 1},
    )
    t, events, outcome = run(cfg)
    assert outcome == "finished" and t.step == 6
    types = [e["type"] for e in events]
    assert types.count("checkpoint") == 3  # steps 3 and 6, and the final file
    progress = [e for e in events if e["type"] == "progress"]
    assert [p["step"] for p in progress] == list(range(1, 7))
    assert all(p["loss"] > 0 and p["total"] == 6 for p in progress)
    out = Path(cfg.output.dir)
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["tinytest.safetensors", "tinytest_000000006.safetensors"]
    assert len(list((out / "state").glob("*.json"))) == 1  # keep=1
    keys = lora(out / "tinytest.safetensors")
    assert any("adaLN_modulation.0.lora_A" in k for k in keys) and any("feed_forward.w1.lora_B" in k for k in keys)
    log = [json.loads(x) for x in (out / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 7)) and log[0]["lr"] == pytest.approx(0.0)
    assert log[1]["lr"] == pytest.approx(cfg.training.learning_rate / 2)  # warmup i/W, as transformers' schedules
    # the trainer's own memory figures (bench/realsize.py reads them): resident peaks per phase, tensor bytes
    mem = json.loads((out / "memory.json").read_text())
    marks = {m["mark"]: m for m in mem["marks"]}
    assert list(marks)[:3] == ["start", "cached", "model_ready"] and "step_6" in marks and "end" in marks
    assert 0 < marks["start"]["peak_rss_bytes"] <= marks["end"]["peak_rss_bytes"]
    n_lora = mem["tensor_bytes"]["lora_trainable_params"]
    assert n_lora > 0 and mem["tensor_bytes"]["transformer"]["torch.float32"] >= 4 * n_lora


def test_samples_do_not_change_training(tmp_path: Path, data: Path):
    base = dict(training={"max_steps": 4}, output={"save_every": 2}, cache={"dir": str(tmp_path / "cache")})
    sample = {"enable": True, "every": 2, "prompts": ["<zstyle> a boat"], "steps": 2, "width": 32, "height": 32}
    plain, _, _ = run(tiny_config(tmp_path / "a", data, **base))
    sampled, events, _ = run(tiny_config(tmp_path / "b", data, **base, sample=sample))
    samples = [e for e in events if e["type"] == "sample"]
    assert [s["step"] for s in samples] == [2, 4] and all(Path(s["path"]).is_file() for s in samples)
    a, b = lora(plain.out / "tinytest.safetensors"), lora(sampled.out / "tinytest.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # everything cached now: the next run loads only the VAE for its samples, and draws the same pictures
    again, events, _ = run(tiny_config(tmp_path / "c", data, **base, sample=sample))
    assert not any(e["type"] == "phase" and "VAE and text encoder" in e["message"] for e in events)
    first, second = (Path(e["path"]).read_bytes() for e in (samples[-1], [e for e in events if e["type"] == "sample"][-1]))
    assert first == second


def test_stop_request_saves_and_reports(tmp_path: Path, data: Path):
    t, events, outcome = run(tiny_config(tmp_path, data, training={"max_steps": 50}), StopFlag(), "SIGINT")
    assert outcome == "stopped" and t.step == 1
    assert events[-1]["type"] == "warning" and "SIGINT" in events[-1]["message"]
    ckpts = [e for e in events if e["type"] == "checkpoint"]
    assert [c["step"] for c in ckpts] == [1] and Path(ckpts[0]["path"]).name == "tinytest_000000001.safetensors"
    assert (t.out / "state" / "tinytest_000000001.json").is_file()
    assert not (t.out / "tinytest.safetensors").exists()  # no final file for an unfinished run


def test_resume_without_state_starts_fresh(tmp_path: Path, data: Path):
    t, events, _ = run(tiny_config(tmp_path, data, training={"max_steps": 2}, output={"resume": True}))
    assert any(e["type"] == "warning" and "no resume state" in e["message"] for e in events)
    assert t.step == 2


def test_resume_with_another_lora_shape_is_refused(tmp_path: Path, data: Path):
    from zlt.core.errors import BadInputError

    run(tiny_config(tmp_path, data, training={"max_steps": 2}, output={"save_every": 1}))
    t = Trainer(tiny_config(tmp_path, data, lora={"rank": 8}, output={"resume": True}), EventWriter(io.StringIO()))
    with pytest.raises(BadInputError, match="another LoRA config"):
        t.setup()


def test_divergence_fails_the_run(tmp_path: Path, data: Path):
    from zlt.core.errors import JobFailedError
    from zlt.run.divergence import NAN_PATIENCE

    buf = io.StringIO()
    t = Trainer(tiny_config(tmp_path, data, training={"max_steps": 30, "learning_rate": 1e30, "max_grad_norm": None},
                            output={"save_every": 1}), EventWriter(buf, interval_s=60.0))
    t.setup()
    with pytest.raises(JobFailedError, match="diverged"):
        t.run()
    events = [json.loads(x) for x in buf.getvalue().splitlines()]  # strict JSON: json.loads would accept NaN
    assert "NaN" not in buf.getvalue() and "Infinity" not in buf.getvalue()
    bad = [e for e in events if e["type"] == "progress" and e["loss_nonfinite"]]
    assert len(bad) == NAN_PATIENCE and all(e["loss"] is None for e in bad)  # every non-finite step, unthrottled
    first_bad = bad[0]["step"]
    saved = [e["step"] for e in events if e["type"] == "checkpoint"]
    assert saved == list(range(1, first_bad))  # nothing saved from a non-finite step
    log = (t.out / "loss_log.jsonl").read_text()
    assert "NaN" not in log and json.loads(log.splitlines()[-1])["loss_nonfinite"] is True
