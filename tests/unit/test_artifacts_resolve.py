"""The one artifact resolver (zlt.artifacts.resolve): every reference form, every error, and the folder's own line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fixtures.artifact_jobs import make_job_dir
from zlt.artifacts import collect_artifact, store
from zlt.artifacts.lineage import RETRAIN_FILE
from zlt.artifacts.promote import promote
from zlt.artifacts.reindex import reindex
from zlt.artifacts.resolve import parse_step, resolve, resolve_folder, resolve_id, resolve_row, split_ref
from zlt.core.errors import BadInputError, NotFoundError
from zlt.spec import load_spec

# make_job_dir: checkpoints 250/500/750 kept, final weights at step 1000


def _job(root: Path, n: int, **kw) -> Path:
    return make_job_dir(root / str(n), job_id=f"20260801-12000{n}-abc12{n}", **kw)


@pytest.fixture
def ids(tmp_path, zlt_home) -> list[str]:
    """watercolor v0, v1, v2, then oil v0 (the newest artifact)."""
    out = [collect_artifact(_job(tmp_path, n), home=zlt_home).id for n in range(3)]
    out.append(collect_artifact(_job(tmp_path, 3, spec={"name": "oil"}), home=zlt_home).id)
    return out


def test_split_ref_and_parse_step():
    assert split_ref("a@500") == ("a", "500") and split_ref("a@BEST") == ("a", "best")
    assert split_ref("wc@v2") == ("wc@v2", None) and split_ref("wc@v2@500") == ("wc@v2", "500")
    assert parse_step(None) is None and parse_step("750") == 750 and parse_step(" Best ") == "best"
    with pytest.raises(BadInputError, match=r"--step 'x': not a step number or 'best'"):
        parse_step("x")


def test_id_prefix_job_id_style_version_and_latest(ids, zlt_home):
    assert resolve(zlt_home, ids[1]).row["id"] == ids[1]  # full id
    assert resolve_id(zlt_home, "20260801-120001-abc121_water") == ids[1]  # unique id prefix
    assert resolve_id(zlt_home, "20260801-120002-abc122") == ids[2]  # job id
    assert resolve_id(zlt_home, "watercolor") == ids[2]  # style name: never promoted, the newest
    promote(zlt_home, ids[0])
    assert resolve_id(zlt_home, "watercolor") == ids[0]  # the promoted version
    assert resolve_id(zlt_home, "watercolor@v1") == ids[1]
    assert resolve_id(zlt_home, "oil") == ids[3]
    assert resolve_id(zlt_home, "latest") == ids[3]  # the newest artifact of any style
    picked = resolve(zlt_home, "latest")
    assert picked.id == ids[3] and picked.name == "oil" and picked.path.is_dir() and picked.step is None


def test_checkpoint_steps_in_the_reference_and_as_an_option(ids, zlt_home):
    assert resolve(zlt_home, f"{ids[0]}@500").step == 500  # ID@STEP
    assert resolve(zlt_home, "watercolor@250").step == 250  # STYLE@STEP
    picked = resolve(zlt_home, "watercolor@v1@750")  # STYLE@vN@STEP
    assert (picked.id, picked.step) == (ids[1], 750)
    assert resolve(zlt_home, f"{ids[0]}@1000").step is None  # the final weights' step: lora.safetensors
    assert resolve(zlt_home, ids[0], step="500").step == 500  # --step N
    assert resolve(zlt_home, f"{ids[0]}@500", step=500).step == 500  # both, agreeing
    with pytest.raises(BadInputError, match="step 500 and --step says 750"):
        resolve(zlt_home, f"{ids[0]}@500", step="750")
    assert resolve_row(zlt_home, f"{ids[0]}@500")["id"] == ids[0]  # commands that need no step ignore it


def test_best_is_what_the_evaluation_picked_and_an_error_before(ids, zlt_home):
    with pytest.raises(BadInputError, match=f"artifact '{ids[3]}' has not been evaluated") as exc:
        resolve(zlt_home, "oil@best")
    assert f"zlt eval {ids[3]}" in exc.value.hint
    with pytest.raises(BadInputError, match="has not been evaluated"):
        resolve(zlt_home, "oil", step="best")
    store.update_meta(zlt_home, ids[3], {"best_step": 750})  # what `zlt eval` records
    assert resolve(zlt_home, "oil@best").step == 750
    assert resolve(zlt_home, ids[3], step="best").step == 750
    assert resolve(zlt_home, "latest@best").step == 750
    store.update_meta(zlt_home, ids[3], {"best_step": 1000})
    assert resolve(zlt_home, "oil@best").step is None  # the best is the final weights


def test_best_falls_back_to_the_folders_training_meta(ids, zlt_home):
    folder = resolve(zlt_home, ids[0]).path
    meta = json.loads((folder / "training_meta.json").read_text())
    meta["eval"] = {"best_step": 250}
    (folder / "training_meta.json").write_text(json.dumps(meta))
    assert resolve(zlt_home, f"{ids[0]}@best").step == 250


def test_errors_say_what_was_tried(ids, zlt_home):
    with pytest.raises(NotFoundError) as exc:
        resolve(zlt_home, "foo")
    msg = exc.value.message
    assert msg.startswith("no artifact 'foo': not an id, id prefix, job id, style name")
    assert "'latest'" in msg and msg.endswith("known styles: oil, watercolor")
    with pytest.raises(BadInputError, match="is ambiguous: it matches 4 artifacts") as exc:
        resolve(zlt_home, "20260801-12000")
    assert all(i in exc.value.message for i in ids)
    with pytest.raises(NotFoundError, match=r"style 'watercolor' has no version 9 \(it has v0, v1, v2\)"):
        resolve(zlt_home, "watercolor@v9")
    with pytest.raises(NotFoundError, match=r"no artifact 'acrylic@v1': no style 'acrylic'; known styles: oil"):
        resolve(zlt_home, "acrylic@v1")
    with pytest.raises(NotFoundError, match="no artifact 'foo'"):
        resolve(zlt_home, "foo@500")
    with pytest.raises(BadInputError, match="artifact reference is empty"):
        resolve(zlt_home, "  ")


def test_latest_with_no_artifact(zlt_home):
    with pytest.raises(NotFoundError, match="no artifact yet, so none is the latest"):
        resolve(zlt_home, "latest")
    with pytest.raises(NotFoundError, match="known styles: none yet"):
        resolve(zlt_home, "foo")


def test_fixed_references_only_where_asked(ids, zlt_home):
    for ref in ("watercolor", "latest"):
        with pytest.raises(BadInputError, match="changes over time") as exc:
            resolve(zlt_home, ref, moving=False)
        assert "STYLE@vN" in exc.value.hint
    assert resolve_id(zlt_home, "watercolor@v1", moving=False) == ids[1]
    assert resolve_id(zlt_home, ids[2], moving=False) == ids[2]


def test_resolve_folder_takes_a_folder_path_too(ids, zlt_home, tmp_path):
    folder = resolve_folder(zlt_home, "watercolor@v0")
    assert folder.name == ids[0] and resolve_folder(zlt_home, str(folder)) == folder
    with pytest.raises(NotFoundError, match="not an artifact folder"):
        resolve_folder(zlt_home, str(tmp_path))
    shutil.rmtree(resolve_folder(zlt_home, ids[1]))
    with pytest.raises(NotFoundError, match="is indexed but its folder .* is gone"):
        resolve_folder(zlt_home, ids[1])


def test_a_copied_retrained_folder_keeps_its_line_after_reindex(tmp_path, zlt_home):
    """The folder records style, version and parent (training_meta.json `lineage`): another home indexing a copy,
    with the job folders gone, rebuilds the same line."""
    parent_job = _job(tmp_path, 0)
    parent = collect_artifact(parent_job, home=zlt_home)
    child_job = _job(tmp_path, 1, spec={"training": {"max_steps": 3000}})
    parent_spec = load_spec(parent_job / "spec.yaml").spec.model_dump(mode="json")
    (child_job / RETRAIN_FILE).write_text(json.dumps({"parent_id": parent.id, "parent_spec": parent_spec,
                                                       "mode": "warm", "base_step": 1000}))
    child = collect_artifact(child_job, home=zlt_home)
    line = json.loads((child.path / "training_meta.json").read_text())["lineage"]
    assert (line["style"], line["version"], line["parent_id"], line["mode"]) == ("watercolor", 1, parent.id, "warm")
    assert json.loads((parent.path / "training_meta.json").read_text())["lineage"]["version"] == 0

    copies = tmp_path / "elsewhere"
    copies.mkdir()
    for rec in (child, parent):  # the child first: the version comes from the folder, not the order
        shutil.copytree(rec.path, copies / rec.path.name)
    shutil.rmtree(tmp_path / "0")
    shutil.rmtree(tmp_path / "1")  # the job folders are gone
    other = tmp_path / "other-home"
    report = reindex(other, [copies])
    assert sorted(i["id"] for i in report["indexed"]) == sorted([parent.id, child.id])
    rows = {r["id"]: r for r in store.fetch_style(other, "watercolor")}
    assert rows[child.id]["version"] == 1 and rows[child.id]["parent_id"] == parent.id
    assert rows[child.id]["lineage"]["spec_diff"]["training.max_steps"]["to"] == 3000
    assert rows[parent.id]["version"] == 0 and rows[parent.id]["parent_id"] is None
    assert resolve_id(other, "watercolor@v1") == child.id

