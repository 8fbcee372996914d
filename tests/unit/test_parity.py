"""docs/parity.md stays the generator's output, and every spec field is either carried out by each backend's render
(its output changes) or warned about, unless the mapping says zlt itself carries it out."""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Any

import pytest

from zlt.backends import names, render_spec
from zlt.backends.parity import MAPS, ZLT, leaf_fields, parity_markdown
from zlt.profiles import get_profile
from zlt.render import RenderContext
from zlt.spec import load_spec_data
from zlt.spec.models import JobSpec

REPO = Path(__file__).resolve().parents[2]
BACKENDS = names()
CTX = RenderContext(output_dir=Path("/jobs/j1/output"), config_dir=Path("/jobs/j1/render"), job_id="j1",
                    cache_dir=Path("/zlt/cache"), trainer_root=Path("/opt/trainer"), python="python",
                    zlt_python="python3", log_path=Path("/jobs/j1/trainer.log"), models_dir=Path("/models/z-image"))

# Values that change a field where a generic rule would not (None, free text, lists, dependent constraints).
CANDIDATES: dict[str, list[Any]] = {
    "name": ["another_style"],
    "model.base.name": ["someone/z-image-finetune"],
    "model.base.training_adapter": ["none", "/adapters/other.safetensors"],
    "model.base.dit": ["/m/dit.safetensors"],
    "model.base.vae": ["/m/vae.safetensors"],
    "model.base.text_encoder": ["/m/te.safetensors"],
    "model.lora.alpha": [8.0],
    "model.lora.dropout": [0.1],
    "model.lora.target_modules": [["attention.to_q", "feed_forward.w1"]],
    "dataset.path": ["/data/other"],
    "dataset.resolution": [768],
    "dataset.caption.trigger_token": ["<other>"],
    "dataset.caption.caption_ext": ["caption"],
    "dataset.caption.default_caption": ["a picture"],
    "dataset.caption.dropout": [0.2],
    "training.warmup_steps": [50],
    "training.learning_rate": [3e-4],
    "training.optimizer.weight_decay": [0.01],
    "training.timestep_shift": [2.0],
    "training.sample.prompts": [["a cat on a sofa"]],
    "training.sample.steps": [20],
    "training.sample.guidance_scale": [3.5],
    "job.resources.gpu": [2, 0],
}
# Fields that only matter once another is set: walk them with it set.
CONTEXT: dict[str, dict[str, Any]] = {"training.sample.": {"training.sample.enable": True}}


def _get(d: dict, path: str) -> Any:
    for part in path.split("."):
        d = d[part]
    return d


def _set(d: dict, path: str, value: Any) -> None:
    *head, last = path.split(".")
    for part in head:
        d = d[part]
    d[last] = value


def _annotation(path: str):
    model: Any = JobSpec
    for part in path.split("."):
        ann = model.model_fields[part].annotation
        model = ann
    return model


def candidates(path: str, value: Any) -> list[Any]:
    if path in CANDIDATES:
        return CANDIDATES[path]
    ann = _annotation(path)
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    literal = next((a for a in args if typing.get_origin(a) is typing.Literal), None)
    if typing.get_origin(ann) is typing.Literal or literal is not None:
        options = typing.get_args(literal if literal is not None else ann)
        return [o for o in options if o != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1]
    if isinstance(value, float):
        return [value * 2]
    raise AssertionError(f"{path}: add a changed value to CANDIDATES")


def _base() -> dict:
    return load_spec_data({}).spec.model_dump(mode="json")


def _render(data: dict, backend: str):
    res = render_spec(JobSpec.model_validate(data), backend, get_profile("24gb"), CTX)
    return {"files": res.files, "argv": res.argv}, res.warnings


def test_every_leaf_field_has_one_entry_per_backend():
    leaves = leaf_fields()
    assert "training.timestep_shift" in leaves and "model.lora.target_modules" in leaves
    for backend in BACKENDS:
        assert sorted(MAPS[backend]) == sorted(leaves), backend


def test_parity_doc_is_the_generators_output():
    doc = (REPO / "docs" / "parity.md").read_text(encoding="utf-8")
    assert doc == parity_markdown(), "regenerate: python -m zlt.backends.parity > docs/parity.md"


WALKED = [p for p in leaf_fields() if any(MAPS[b][p].kind != ZLT for b in BACKENDS)]


@pytest.mark.parametrize("path", WALKED)
def test_changing_a_field_changes_each_backends_output_or_warns(path):
    base = _base()
    for prefix, extra in CONTEXT.items():
        if path.startswith(prefix):
            for k, v in extra.items():
                _set(base, k, v)
    before = {b: _render(base, b) for b in BACKENDS}
    silent = []
    for backend in BACKENDS:
        if MAPS[backend][path].kind == ZLT:
            continue
        ok = False
        for value in candidates(path, _get(base, path)):
            data = copy.deepcopy(base)
            _set(data, path, value)
            out, warnings = _render(data, backend)
            about = [w for w in warnings if path in w.fields]
            about_before = [w for w in before[backend][1] if path in w.fields]
            if out != before[backend][0] or about or about != about_before:
                ok = True
                break
        if not ok:
            silent.append(backend)
    assert not silent, f"{path}: {silent} neither changed the render nor warned ({MAPS[silent[0]][path].where})"


def test_each_warning_names_its_fields_where_it_is_made():
    musubi = render_spec(load_spec_data({}).spec, "musubi", get_profile("24gb"), CTX)
    weights = next(w for w in musubi.warnings if w.startswith("model.base.dit/vae/text_encoder: musubi needs local"))
    assert set(weights.fields) == {"model.base.dit", "model.base.vae", "model.base.text_encoder"}
    spec = load_spec_data({"training": {"warmup_steps": 50, "scheduler": "cosine"}}).spec
    aitk = render_spec(spec, "ai-toolkit", get_profile("24gb"), CTX)
    warmup = next(w for w in aitk.warnings if w.startswith("training.warmup_steps: ai-toolkit's cosine schedule"))
    assert set(warmup.fields) == {"training.warmup_steps"}
    tiny_spec = load_spec_data({"model": {"base": {"name": "zlt/tiny-zimage"}}, "training": {"backend": "lightning"}})
    tiny = render_spec(tiny_spec.spec, "lightning", get_profile("cpu"), CTX)
    assert [set(w.fields) for w in tiny.warnings if w.startswith("zlt/tiny-zimage:")] == [set()]


def test_explain_rows_say_what_the_backend_does_and_which_source_decided():
    from zlt.backends.parity import explain_rows

    loaded = load_spec_data({"preset": "character", "model": {"lora": {"rank": 4, "alpha": 2}}})
    res = render_spec(loaded.spec, "ai-toolkit", get_profile("80gb"), CTX)
    rows = {r["field"]: r for r in explain_rows(loaded, res)}
    assert list(rows) == leaf_fields()
    alpha = rows["model.lora.alpha"]
    assert alpha["value"] == 2.0 and alpha["source"] == "spec" and alpha["where"] == MAPS["ai-toolkit"]["model.lora.alpha"].where
    assert alpha["warnings"] and alpha["notes"] == ["model.lora.alpha: trained with alpha 4 (= rank)"]
    gc = rows["training.gradient_checkpointing"]
    assert gc["value"] is None and gc["notes"] == ["training.gradient_checkpointing: off (profile 80gb (ai_toolkit lever))"]
    assert rows["job.priority"]["carried_by"] == ZLT


def test_render_explain_json_carries_the_rows(tmp_path):
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "spec.yaml").write_text("name: demo\npreset: character\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "zlt", "render", str(tmp_path / "spec.yaml"), "--backend", "musubi",
                        "--profile", "24gb", "--explain", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    rows = {row["field"]: row for row in obj["explain"]}
    assert rows["training.timestep_shift"]["where"] == "--discrete_flow_shift"
    assert obj["trained"]["gradient_checkpointing"] is True
