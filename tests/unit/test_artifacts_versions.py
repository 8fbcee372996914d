"""Versions of a style, lineage, promote/rollback/resolve, rm of the current version, reindex after a crash."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.fixtures.artifact_jobs import make_job_dir
from tests.jobs_dialects import dialect, pg_server  # noqa: F401
from zlt.artifacts import collect_artifact, get_artifact, remove_artifact
from zlt.artifacts.lineage import RETRAIN_FILE, image_changes, spec_diff
from zlt.artifacts.promote import current_id, history, promote, rollback
from zlt.artifacts.reindex import reindex
from zlt.artifacts.resolve import resolve_folder
from zlt.artifacts.tables import connect
from zlt.artifacts.versions import style_line
from zlt.core.errors import BadInputError, NotFoundError


def _job(root: Path, n: int, **kw) -> Path:
    return make_job_dir(root / str(n), job_id=f"20260801-12000{n}-abc12{n}", **kw)


def _sql(home: Path, statement: str, params: tuple = ()) -> None:
    """A change behind the library's back (a crash's leftovers), on whichever store the test runs."""
    db = connect(home)
    try:
        db.execute(statement, params)
    finally:
        db.close()


def _manifest(job: Path, images: dict[str, str]) -> None:
    (job / "prepared").mkdir(exist_ok=True)
    entries = [{"source": name, "source_sha256": sha, "file": f"img{i}.png", "sha256": "x"}
               for i, (sha, name) in enumerate(images.items())]
    entries.append({"source": "a.png", "source_sha256": "aa", "file": "img0_flip.png", "flipped": True})
    (job / "prepared" / "manifest.json").write_text(json.dumps({"images": entries}))


@pytest.mark.usefixtures("dialect")
def test_versions_of_one_style_form_a_line(tmp_path, zlt_home):
    ids = [collect_artifact(_job(tmp_path, n), home=zlt_home).id for n in range(3)]
    # The user's pattern {job_id}_{style_name}_v0: the literal v0 is the version of the style
    assert ids == ["20260801-120000-abc120_watercolor_v0", "20260801-120001-abc121_watercolor_v1",
                   "20260801-120002-abc122_watercolor_v2"]
    line = style_line(zlt_home, "watercolor")
    assert [v["version"] for v in line["versions"]] == [0, 1, 2]
    assert line["current"] == ids[2] and not line["promoted"]
    assert line["versions"][0]["final_step"] == 1000 and line["versions"][0]["final_loss"] is not None


@pytest.mark.usefixtures("dialect")
def test_concurrent_collections_get_distinct_versions(tmp_path, zlt_home):
    jobs = [_job(tmp_path, n) for n in range(4)]
    connect(zlt_home).close()  # migrate once, before the race
    errors: list[BaseException] = []

    def run(job: Path) -> None:
        try:
            collect_artifact(job, home=zlt_home)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    line = style_line(zlt_home, "watercolor")["versions"]
    assert sorted(v["version"] for v in line) == [0, 1, 2, 3]
    for v in line:  # the folder name carries the version the index gave it
        assert v["id"].endswith(f"_v{v['version']}")


@pytest.mark.usefixtures("dialect")
def test_unversioned_pattern_still_numbers_the_line(tmp_path, zlt_home):
    spec = {"output": {"naming": {"pattern": "{job_id}_{style_name}"}}}
    for n in range(2):
        collect_artifact(_job(tmp_path, n, spec=spec), home=zlt_home)
    assert [v["version"] for v in style_line(zlt_home, "watercolor")["versions"]] == [0, 1]


@pytest.mark.usefixtures("dialect")
def test_promote_resolve_rollback_round_trip(tmp_path, zlt_home):
    ids = [collect_artifact(_job(tmp_path, n), home=zlt_home).id for n in range(3)]
    assert resolve_folder(zlt_home, "watercolor").name == ids[2]  # never promoted: the newest
    promote(zlt_home, ids[1])
    assert resolve_folder(zlt_home, "watercolor").name == ids[1]
    assert resolve_folder(zlt_home, "watercolor@v0").name == ids[0]
    assert resolve_folder(zlt_home, ids[2]).name == ids[2]
    folder = resolve_folder(zlt_home, ids[2])
    assert resolve_folder(zlt_home, str(folder)) == folder
    promote(zlt_home, ids[0])
    back = rollback(zlt_home, "watercolor")  # undoes the last promotion: back to what was current before it
    assert (back["current"], back["previous"]) == (ids[1], ids[0])
    back = rollback(zlt_home, "watercolor")  # before the first promotion the style resolved to its newest
    assert (back["current"], back["previous"]) == (ids[2], ids[1])
    assert resolve_folder(zlt_home, "watercolor").name == ids[2]
    with pytest.raises(BadInputError, match="nothing to roll back to"):
        rollback(zlt_home, "watercolor")
    assert [(h["action"], h["artifact_id"]) for h in history(zlt_home, "watercolor")] == [
        ("promote", ids[1]), ("promote", ids[0]), ("rollback", ids[1]), ("rollback", ids[2])]
    assert all(Path(resolve_folder(zlt_home, i)).is_dir() for i in ids)  # nothing deleted
    with pytest.raises(NotFoundError):
        resolve_folder(zlt_home, "watercolor@v9")
    with pytest.raises(NotFoundError):
        resolve_folder(zlt_home, "nope")


def test_rollback_of_a_never_promoted_style_steps_back_from_the_newest(tmp_path, zlt_home):
    ids = [collect_artifact(_job(tmp_path, n), home=zlt_home).id for n in range(2)]
    assert rollback(zlt_home, "watercolor")["current"] == ids[0]


def test_promoting_the_oldest_then_rollback_undoes_it_and_rm_hints_only_what_works(tmp_path, zlt_home):
    ids = [collect_artifact(_job(tmp_path, n), home=zlt_home).id for n in range(2)]
    promote(zlt_home, ids[0])  # the oldest version
    with pytest.raises(BadInputError, match="current version") as exc:
        remove_artifact(zlt_home, ids[0])
    assert f"'zlt artifacts rollback watercolor' makes {ids[1]} current" in exc.value.hint
    assert rollback(zlt_home, "watercolor")["current"] == ids[1]  # the promotion undone, not "oldest version"
    promote(zlt_home, ids[0])
    remove_artifact(zlt_home, ids[1])  # not current: fine; now nothing is left to roll back to
    with pytest.raises(BadInputError) as exc:
        remove_artifact(zlt_home, ids[0])
    assert exc.value.hint == "it is the only version of style 'watercolor': pass --force to delete it"


@pytest.mark.usefixtures("dialect")
def test_rm_refuses_the_current_version_unless_forced(tmp_path, zlt_home):
    ids = [collect_artifact(_job(tmp_path, n), home=zlt_home).id for n in range(2)]
    promote(zlt_home, ids[1])
    with pytest.raises(BadInputError, match="current version") as exc:
        remove_artifact(zlt_home, ids[1])
    assert "--force" in exc.value.hint
    remove_artifact(zlt_home, ids[0])  # not current: fine
    remove_artifact(zlt_home, ids[1], force=True)
    assert current_id(zlt_home, "watercolor") is None
    assert [h["artifact_id"] for h in history(zlt_home, "watercolor")] == [ids[1]]  # history kept


@pytest.mark.usefixtures("dialect")
def test_reindex_after_a_crash_between_rename_and_index_row(tmp_path, zlt_home):
    rec = collect_artifact(_job(tmp_path, 0), home=zlt_home)
    _sql(zlt_home, "DELETE FROM artifacts WHERE id = ?", (rec.id,))  # the index row never made it
    staging = rec.path.parent / ".staging-otherhost-1-abcd"
    staging.mkdir()
    report = reindex(zlt_home)
    assert [i["id"] for i in report["indexed"]] == [rec.id]
    assert report["incomplete"] == [str(staging)]
    art = get_artifact(zlt_home, rec.id)
    assert art["files"] and art["version"] == 0  # read back from its name
    from zlt.artifacts import verify_artifact

    assert verify_artifact(zlt_home, rec.id).ok
    assert reindex(zlt_home)["indexed"] == []  # idempotent
    assert staging.is_dir()  # reported, not removed


@pytest.mark.usefixtures("dialect")
def test_lineage_records_parent_spec_diff_and_dataset_changes(tmp_path, zlt_home):
    parent_job = _job(tmp_path, 0)
    _manifest(parent_job, {"aa": "a.png", "bb": "b.png"})
    parent = collect_artifact(parent_job, home=zlt_home)
    child_job = _job(tmp_path, 1, spec={"training": {"max_steps": 3000}})
    _manifest(child_job, {"aa": "a_renamed.png", "cc": "c.png"})
    from zlt.spec import load_spec

    parent_spec = load_spec(parent_job / "spec.yaml").spec.model_dump(mode="json")
    (child_job / RETRAIN_FILE).write_text(json.dumps({"parent_id": parent.id, "parent_spec": parent_spec,
                                                       "mode": "warm", "base_step": 1000}))
    child = collect_artifact(child_job, home=zlt_home)
    art = get_artifact(zlt_home, child.id)
    assert art["parent_id"] == parent.id and art["version"] == 1
    lin = art["lineage"]
    assert lin["spec_diff"]["training.max_steps"]["to"] == 3000
    changes = lin["dataset_changes"]
    assert changes["added"] == [{"sha256": "cc", "file": "c.png"}]
    assert changes["removed"] == [{"sha256": "bb", "file": "b.png"}]
    assert changes["kept"] == 1  # renamed, same bytes: not a change


def test_spec_diff_and_image_changes_are_pure():
    assert spec_diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4}) == {
        "a.c": {"from": 2, "to": 3}, "d": {"from": None, "to": 4}}
    assert image_changes(None, {"x": "x.png"}) is None


def test_m010_numbers_the_artifacts_of_an_old_store(tmp_path):
    """A store from before versions: m010 adds the columns and numbers each style's artifacts by creation time."""
    from zlt.artifacts.tables import MIGRATIONS
    from zlt.db.dialect import sqlite_database
    from zlt.db.migrate import InTransaction, migrate

    db = sqlite_database(tmp_path / "old.db")
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, fn in MIGRATIONS:
        if name < "m010":
            fn(InTransaction(db))
            db.execute("INSERT INTO migrations (name, applied_at) VALUES (?, 0)", (name,))
    rows = [("b_v0", "wc", 2.0), ("a_v0", "wc", 1.0), ("c_v0", "oil", 1.5), ("d_v0", "wc", 2.0)]
    for id_, style, ts in rows:
        db.execute("INSERT INTO artifacts (id, name, path, created_at) VALUES (?, ?, '/x', ?)", (id_, style, ts))
    assert "m010_artifact_versions" in migrate(db, MIGRATIONS)
    got = {r[0]: r[1] for r in db.execute("SELECT id, version FROM artifacts").fetchall()}
    assert got == {"a_v0": 0, "b_v0": 1, "d_v0": 2, "c_v0": 0}
    with pytest.raises(sqlite3.IntegrityError):  # one version of a style is one artifact
        db.execute("INSERT INTO artifacts (id, name, path, created_at, version) VALUES ('e', 'wc', '/x', 3, 1)")


def test_worker_start_up_indexes_an_old_unindexed_folder_and_reports_staging(tmp_path, zlt_home):
    import os
    import time

    from zlt.artifacts.reindex import STARTUP_MIN_AGE_S, startup_reindex

    old, fresh = (collect_artifact(_job(tmp_path, n), home=zlt_home) for n in range(2))
    _sql(zlt_home, "DELETE FROM artifacts")
    past = time.time() - STARTUP_MIN_AGE_S - 10
    os.utime(old.path / "training_meta.json", (past, past))
    (old.path.parent / ".staging-h-1-x").mkdir()
    lines: list[str] = []
    startup_reindex(zlt_home, lines.append)
    assert any(old.id in ln and "never indexed" in ln for ln in lines)
    assert any(".staging-h-1-x" in ln for ln in lines)
    assert not any(fresh.id in ln for ln in lines)  # a collector may be about to index it
    assert get_artifact(zlt_home, old.id)["id"] == old.id


@pytest.mark.usefixtures("dialect")
def test_reindex_gives_a_folder_the_version_in_its_name(tmp_path, zlt_home):
    recs = [collect_artifact(_job(tmp_path, n), home=zlt_home) for n in range(3)]
    _sql(zlt_home, "DELETE FROM artifacts WHERE id = ?", (recs[1].id,))
    assert [i["version"] for i in reindex(zlt_home)["indexed"]] == [1]
    assert [v["version"] for v in style_line(zlt_home, "watercolor")["versions"]] == [0, 1, 2]


@pytest.mark.usefixtures("dialect")
def test_concurrent_collector_processes_get_distinct_versions(tmp_path, zlt_home):
    """Separate processes (as two workers finishing two retrains of one style at once), not threads."""
    import os
    import subprocess
    import sys

    jobs = [_job(tmp_path, n) for n in range(3)]
    connect(zlt_home).close()
    procs = [subprocess.Popen([sys.executable, "-m", "zlt", "artifacts", "collect", str(j), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
             for j in jobs]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    ids = sorted(json.loads(o[0])["artifact"]["id"] for o in outs)
    assert sorted(i[-2:] for i in ids) == ["v0", "v1", "v2"]
    assert sorted(v["version"] for v in style_line(zlt_home, "watercolor")["versions"]) == [0, 1, 2]


def test_retrain_plans_from_a_style_name(tmp_path, zlt_home):
    from PIL import Image

    from zlt.flows.retrain import plan_retrain

    job = _job(tmp_path, 0)
    (job / "dataset").mkdir()
    Image.new("RGB", (32, 32)).save(job / "dataset" / "a.png")
    rec = collect_artifact(job, home=zlt_home)
    plan = plan_retrain(zlt_home, "watercolor", more_steps=100)
    # collected by hand: no job in the store, so no trainer state to resume
    assert (plan.mode, plan.base_step, plan.spec.spec.training.max_steps) == ("warm", 1000, 100)
    # a short retrain still keeps a checkpoint and trains after its warmup; the plan says so
    assert plan.summary()["adjusted"] == ["output.save.every=100", "training.warmup_steps=10"]
    assert plan_retrain(zlt_home, rec.id, steps=300, sets=["training.learning_rate=5e-5"]).summary()["max_steps"] == 300
    with pytest.raises(BadInputError, match="give one"):
        plan_retrain(zlt_home, "watercolor", steps=1, more_steps=1)
    with pytest.raises(BadInputError, match="--more-steps"):
        plan_retrain(zlt_home, "watercolor", sets=["training.max_steps=5000"])
    with pytest.raises(BadInputError, match="rank"):
        plan_retrain(zlt_home, "watercolor", sets=["model.lora.rank=8", "model.lora.alpha=8"])
    with pytest.raises(BadInputError, match="names every version"):
        plan_retrain(zlt_home, "watercolor", sets=["output.naming.pattern={style_name}_r{rank}"])


def test_the_line_shows_the_scores_an_evaluation_left(tmp_path, zlt_home):
    from zlt.artifacts.compare import diff_artifacts

    a, b = (collect_artifact(_job(tmp_path, n), home=zlt_home) for n in range(2))
    meta_path = b.path / "training_meta.json"
    meta = json.loads(meta_path.read_text())
    # what zlt/eval/evaluate.py puts into training_meta.json: a table row per step, and the step it picked
    meta["eval"] = {"best_step": 750, "passed": True, "table": [
        {"step": 750, "label": "step 750", "style_similarity": 0.81, "prompt_alignment": 0.30, "kid_clip": None},
        {"step": 1000, "label": "final", "style_similarity": 0.86, "prompt_alignment": 0.28, "kid_clip": 0.01}]}
    meta_path.write_text(json.dumps(meta))
    line = style_line(zlt_home, "watercolor")["versions"]
    assert line[0]["eval"] is None
    assert line[1]["eval"] == {"style_similarity": 0.86, "prompt_alignment": 0.28, "kid_clip": 0.01, "best_step": 750}
    d = diff_artifacts(zlt_home, a.id, b.id)
    assert d["metrics"]["eval.style_similarity"] == {"a": None, "b": 0.86, "delta": None}


def test_generate_takes_a_style_name(tmp_path, zlt_home):
    from zlt.infer.resolve import resolve_artifact

    ids = [collect_artifact(_job(tmp_path, n), home=zlt_home).id for n in range(2)]
    promote(zlt_home, ids[0])
    assert resolve_artifact("watercolor", zlt_home).id == ids[0]  # the current version
    assert resolve_artifact("watercolor@v1", zlt_home).id == ids[1]
    with pytest.raises(NotFoundError, match=r"^generate\.loras: no artifact 'oil'"):
        resolve_artifact("oil", zlt_home)


def test_retrain_resumes_a_parent_that_is_not_in_the_job_store(tmp_path, zlt_home):
    """`zlt train` jobs have no store row: the lineage remembers their folder and dataset listing."""
    from PIL import Image

    from zlt.flows.retrain import plan_retrain

    job = _job(tmp_path, 0)
    (job / "dataset").mkdir()
    Image.new("RGB", (32, 32)).save(job / "dataset" / "a.png")
    for name in ("watercolor.safetensors", "optimizer.pt"):  # ai-toolkit's training folder <output>/<name>/
        (job / "output" / "watercolor").mkdir(exist_ok=True)
        (job / "output" / "watercolor" / name).write_bytes(b"x")
    collect_artifact(job, home=zlt_home)
    plan = plan_retrain(zlt_home, "watercolor", more_steps=500)
    assert (plan.mode, plan.spec.spec.training.max_steps) == ("resume", 1500)
    assert sorted(plan.copy.values()) == ["watercolor/optimizer.pt", "watercolor/watercolor.safetensors"]
    Image.new("RGB", (32, 32), (9, 9, 9)).save(job / "dataset" / "b.png")
    assert "dataset folder changed" in plan_retrain(zlt_home, "watercolor", more_steps=500).why_warm
