"""The one gate (zlt/flows/gate.py): overrides in any syntax end up in the resolved spec, and the fence runs on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from zlt.core.errors import SpecError
from zlt.flows.fences import Roots
from zlt.flows.gate import admit
from zlt.serve.intake import Fence
from zlt.serve.mcp_server import call, make_tools


@pytest.fixture
def roots(tmp_path: Path) -> Roots:
    data, out, models = tmp_path / "data", tmp_path / "out", tmp_path / "models"
    for d in (data / "style", out, models):
        d.mkdir(parents=True)
    (data / "style" / "a.png").write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "a.png").write_bytes(b"x")
    return Roots(data=(data,), output=(out,), models=(models,))


SPEC = {"dataset": {"path": "style", "resolution": 512}}


@pytest.mark.parametrize("override, field", [
    ("output.registry.path={out}", "output.registry.path"),
    ("output.registry={{path: {out}}}", "output.registry.path"),
    ("dataset={{path: {out}, resolution: 64}}", "dataset.path"),
    ("model.base.training_adapter={out}/x.safetensors", "model.base.training_adapter"),
    ("model.base={{training_adapter: {out}/x.safetensors}}", "model.base.training_adapter"),
    ("eval.models.clip={out}", "eval.models.clip"),
    ("eval={{models: {{clip: {out}}}}}", "eval.models.clip"),
    ("job={{callback_url: 'ftp://169.254.169.254/'}}", "job.callback_url"),
])
def test_an_override_in_any_syntax_is_fenced(roots: Roots, tmp_path: Path, override: str, field: str):
    fenced = Roots(roots.data, roots.output, roots.models, check_url=Fence(None, None).roots().check_url)
    with pytest.raises(SpecError) as e:
        admit(SPEC, sets=[override.format(out=tmp_path / "outside")], roots=fenced, mode="submit")
    assert field in [x.path for x in e.value.errors]


def test_the_local_cli_has_no_fence(roots: Roots, tmp_path: Path):
    out = tmp_path / "outside"
    adm = admit({"dataset": {"path": str(out)}}, sets=[f"output.registry={{path: {out}}}"], mode="submit")
    assert adm.spec.output.registry.path == str(out) and adm.listing["images"] == 1


def test_a_clip_folder_outside_the_model_roots_is_refused(roots: Roots, tmp_path: Path):
    with pytest.raises(SpecError) as e:
        admit({**SPEC, "eval": {"models": {"clip": str(tmp_path / "outside")}}}, roots=roots, mode="validate")
    (err,) = e.value.errors
    assert err.path == "eval.models.clip" and "outside" in err.message
    (roots.models[0] / "clip").mkdir()
    adm = admit({**SPEC, "eval": {"models": {"clip": "clip"}}}, roots=roots)
    assert adm.spec.eval.models.clip == str((roots.models[0] / "clip").resolve())
    assert admit(SPEC, roots=roots).spec.eval.models.clip == "openai/clip-vit-large-patch14"  # a hub id


def test_a_parents_own_paths_pass_but_a_changed_one_is_fenced(roots: Roots, tmp_path: Path):
    parent = {"dataset": {"path": str(tmp_path / "outside")}}
    trusted = admit(parent).loaded.resolved()
    assert admit(parent, roots=roots, trusted=trusted, mode="submit").spec.dataset.path == str(tmp_path / "outside")
    with pytest.raises(SpecError) as e:
        admit(parent, sets=[f"output.registry={{path: {tmp_path}}}"], roots=roots, trusted=trusted)
    assert [x.path for x in e.value.errors] == ["output.registry.path"]


def test_an_unknown_backend_is_one_error_from_the_registry(roots: Roots):
    with pytest.raises(SpecError) as e:
        admit({**SPEC, "model": {"base": {"name": "zlt/tiny-zimage"}}}, backend="kohya", roots=roots)
    (err,) = e.value.errors
    assert err.path == "training.backend" and "lightning" in err.hint


def test_mcp_submit_with_a_clip_outside_the_roots_is_a_tool_error(roots: Roots, tmp_path: Path, zlt_home: Path):
    fence = Fence(roots.data, roots.output, model_roots=roots.models)
    tool = next(t for t in make_tools(zlt_home, fence) if t.name == "submit_lora_job")
    result, is_error = call(tool, {"spec": {**SPEC, "eval": {"models": {"clip": str(tmp_path / "outside")}}}})
    assert is_error and any(d.startswith("eval.models.clip:") for d in result["detail"])


@pytest.mark.parametrize("backend", ["tensorflow", "ai-toolkit"])  # the spec's cross-checks apply to --backend too
def test_a_bad_backend_is_refused_before_a_job_exists(tmp_path: Path, zlt_home: Path, backend: str):
    from zlt.jobs.api import list_jobs

    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "a.png").write_bytes(b"x")
    spec = {"model": {"base": {"name": "zlt/tiny-zimage"}}, "dataset": {"path": str(tmp_path / "ds"), "resolution": 64}}
    with pytest.raises(SpecError, match="1 problem") as exc:
        admit(spec, backend=backend, mode="submit")
    assert exc.value.exit_code == 2 and exc.value.errors[0].path == "training.backend"
    assert list_jobs(zlt_home) == []
