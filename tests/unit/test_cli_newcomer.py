"""What a newcomer trips over (issue 25, items 11-14): hints that name the real home and the exact command, `zlt init
--tiny`, the tiny model's leftovers, `--explain`'s true sources, one rate rule, piped progress lines and their order,
`retrain --dry-run`, and docs/api.md's finished-job example. All in-process and cheap."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO
from zlt.cli.app import _register, app
from zlt.core.errors import BadInputError
from zlt.core.units import rate_text
from zlt.jobs.display import progress_text
from zlt.spec import load_spec_data
from zlt.spec.load import load_spec
from zlt.spec.starter import TINY_STARTER, starter_spec


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    _register()
    return CliRunner()


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_init_tiny_writes_the_quick_start_settings_with_nothing_to_note(tmp_path: Path, cli: CliRunner) -> None:
    quick = yaml.safe_load((REPO / "examples/quickstart/spec.yaml").read_text())
    ours = _leaves(TINY_STARTER)
    assert {k: v for k, v in _leaves(quick).items() if k in ours} == ours  # the quick start's values, kept equal
    assert set(_leaves(quick)) - set(ours) == {"name", "preset", "dataset.path", "dataset.caption.trigger_token"}
    r = cli.invoke(app, ["init", str(tmp_path / "a"), "--tiny"])
    assert r.exit_code == 0 and "tiny test model zlt/tiny-zimage on the CPU" in r.output
    r = cli.invoke(app, ["init", str(tmp_path / "b"), "--model", "zlt/tiny-zimage"])
    assert r.exit_code == 0
    text = (tmp_path / "a" / "spec.yaml").read_text()
    assert text == (tmp_path / "b" / "spec.yaml").read_text() == starter_spec("style", model="zlt/tiny-zimage")
    loaded = load_spec(tmp_path / "a" / "spec.yaml")
    s = loaded.spec
    assert (s.dataset.resolution, s.training.max_steps, s.training.learning_rate, s.output.save.every) == (64, 60, 3e-3, 20)
    assert (s.job.resources.gpu, s.job.resources.min_vram_gb, s.model.base.training_adapter) == (0, None, "none")
    assert loaded.warnings == []  # nothing left over from the real model
    assert cli.invoke(app, ["init", str(tmp_path / "c"), "--tiny", "--model", "x/y"]).exit_code == 2


def test_tiny_leftovers_are_noted_by_field_and_explain_shows_true_sources(tmp_path: Path) -> None:
    real = yaml.safe_load(starter_spec("style"))  # what `zlt init` writes, then switched to the tiny model by hand
    real["model"]["base"]["name"] = "zlt/tiny-zimage"
    loaded = load_spec_data(real)
    fields = [w.split(":")[0] for w in loaded.warnings]
    assert fields == ["model.base.training_adapter", "model.base.source", "model.base.precision",
                      "training.mixed_precision", "job.resources.gpu", "job.resources.min_vram_gb"]
    assert load_spec_data({"model": {"base": {"name": "zlt/tiny-zimage"}}}).warnings == []  # preset values: no note
    assert load_spec_data(yaml.safe_load(starter_spec("style"))).warnings == []  # the real model: none
    # every value init wrote equal to the preset or the default says so; only what was changed is the spec's
    prov = loaded.provenance
    assert prov["model.base.name"] == "spec" and prov["job.priority"] == "default"
    assert prov["training.max_steps"] == "preset:style" and prov["preset"] == "default"


def test_explain_shows_the_adapter_as_rendered(tmp_path: Path) -> None:
    from zlt.backends import render_spec
    from zlt.backends.parity import explain_rows
    from zlt.preflight.select import select_profile
    from zlt.render import RenderContext

    loaded = load_spec_data({"model": {"base": {"name": "zlt/tiny-zimage", "training_adapter": "auto"}},
                             "dataset": {"resolution": 64}})
    prof, _ = select_profile(loaded.spec, "lightning", "auto", None)
    result = render_spec(loaded.spec, "lightning", prof, RenderContext(output_dir=tmp_path))
    row = next(r for r in explain_rows(loaded, result) if r["field"] == "model.base.training_adapter")
    assert row["value"] == "auto" and row["rendered"] is None and "merged" not in row["where"].replace("no training adapter is merged", "")
    assert json.loads(result.files[next(iter(result.files))])["model"]["training_adapter"] is None


def test_one_rate_rule_for_status_summary_and_bar() -> None:
    from zlt.flows.training_helpers import say_trained

    assert rate_text(0.202) == "4.95 s/it" and rate_text(91.76) == "91.8 it/s" and rate_text(None) == "? it/s"
    assert "4.95 s/it" in progress_text({"step": 5, "total": 10, "it_s": 0.202})
    out = type("O", (), {"message": ""})()
    say_trained(out, {"first_loss": 1.0, "final_loss": 0.5, "it_s": 0.202}, 10, 10, None)
    assert out.message.endswith("; 4.95 s/it average")  # as `zlt status` says it, not 0.202 it/s


def _sink(clock: list[float]):
    from rich.console import Console

    from zlt.run.display import RichSink

    buf = io.StringIO()
    return RichSink(Console(file=buf, force_terminal=False, width=200), clock=lambda: clock[0]), buf


def _progress(step: int, total: int = 100) -> dict:
    return {"type": "progress", "step": step, "total": total, "loss": 0.5, "it_s": 0.25, "elapsed_s": step * 4.0,
            "eta_s": (total - step) * 4.0}


def test_piped_output_gets_a_progress_line_every_30_s_and_the_bar_before_collecting() -> None:
    clock = [0.0]
    sink, buf = _sink(clock)
    sink(_progress(1))
    for step, t in ((5, 20.0), (8, 31.0), (9, 40.0), (16, 62.0)):
        clock[0] = t
        sink(_progress(step))
    sink(_progress(100))
    sink({"type": "phase", "phase": "collecting", "message": ""})
    sink({"type": "finished", "status": "succeeded"})
    lines = [x.strip() for x in buf.getvalue().splitlines() if x.strip()]
    assert [x for x in lines if x.startswith("training 8/100")] == [
        "training 8/100 loss 0.5 4 s/it elapsed 00:32 ETA 06:08"]
    assert [x.split()[1] for x in lines if re.match(r"training \d", x)] == ["8/100", "16/100"]
    bar = next(i for i, x in enumerate(lines) if "100/100" in x)
    assert lines[bar + 1] == "collecting" and "avg" in lines[bar]  # the final bar first, then what follows it
    clock[0] = 0.0
    sink, buf = _sink(clock)  # stopped early (eval.early_stop, Ctrl-C): the bar still ends before collecting
    sink(_progress(1))
    sink(_progress(66, 400))
    sink({"type": "phase", "phase": "saving", "message": ""})
    sink({"type": "phase", "phase": "collecting", "message": ""})
    sink({"type": "phase", "phase": "evaluating", "message": "artifact x"})
    sink({"type": "finished", "status": "succeeded"})
    lines = [x.strip() for x in buf.getvalue().splitlines() if x.strip()]
    assert "66/400" in lines[0] and lines[1:] == ["collecting", "evaluating artifact x"]


def test_resume_hint_names_the_real_home(tmp_path: Path, zlt_home: Path) -> None:
    from zlt.cli.impl.train import train

    args = dict(spec=tmp_path / "s.yaml", backend=None, profile="auto", vram_gb=None, workdir=None,
                skip_preflight=False, ai_toolkit=None, musubi=None, resume=True, gpus=None, grace=None, sets=[],
                json_out=False)
    with pytest.raises(BadInputError) as e:
        train(**args, home=None)
    assert f"--workdir {zlt_home / 'jobs' / '<job id>'}" in e.value.hint and ".local/share" not in e.value.hint
    with pytest.raises(BadInputError) as e:
        train(**args, home=tmp_path / "elsewhere")
    assert str(tmp_path / "elsewhere" / "jobs") in e.value.hint


def test_retrain_dry_run_says_nothing_was_queued(tmp_path: Path, zlt_home: Path, cli: CliRunner) -> None:
    from PIL import Image

    from tests.fixtures.artifact_jobs import make_job_dir
    from zlt.artifacts import collect_artifact

    job = make_job_dir(tmp_path / "j")
    (job / "dataset").mkdir(exist_ok=True)
    Image.new("RGB", (64, 64)).save(job / "dataset" / "a.png")
    rec = collect_artifact(job, home=zlt_home)
    r = cli.invoke(app, ["retrain", rec.id, "--more-steps", "5", "--dry-run"])
    assert r.exit_code == 0 and r.output.splitlines()[-1].startswith("dry run: nothing was queued")
    r = cli.invoke(app, ["retrain", rec.id, "--more-steps", "5", "--dry-run", "--json"])
    assert json.loads(r.output)["queued"] is False
    assert not (zlt_home / "jobs").exists() or not any((zlt_home / "jobs").iterdir())


def test_api_docs_show_a_finished_job_as_status_does() -> None:
    """zlt.jobs.view: an ended job is doing nothing, its phase is null; the docs' examples say the same."""
    text = (REPO / "docs/api.md").read_text()
    finished = [m for m in re.findall(r'\{[^{}]*"state": "succeeded"[^{}]*\}', text) if '"phase"' in m]
    assert len(finished) >= 3 and all('"phase": null' in m for m in finished)
