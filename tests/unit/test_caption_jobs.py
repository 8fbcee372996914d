"""Issue 26: captioning as a job kind, through every door: `submit_caption` (CLI --submit), `POST
/v1/datasets/caption` (the dataset fence applies), MCP `caption_dataset` -> `submit_lora_job`; the worker runs it in
a thread (the kind registry) with a `captioning` phase and images done/total; `record_end` records its end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from tests.fixtures.caption_fixtures import bare_images  # noqa: E402
from zlt.core.kinds import JobKind  # noqa: E402
from zlt.flows.captioning import submit_caption  # noqa: E402
from zlt.flows.kinds import KINDS, worker_launcher  # noqa: E402
from zlt.jobs import job_events, job_status  # noqa: E402
from zlt.jobs.store import JobStore  # noqa: E402
from zlt.jobs.worker import Worker, WorkerOptions  # noqa: E402

TINY = "zlt/tiny-captioner"


def _run_worker(home: Path) -> None:
    def no_training(claim):
        raise AssertionError(f"{claim.job_id} is not a caption job")

    store = JobStore(home)
    try:
        Worker(store, WorkerOptions(gpus=[], once=True, poll_s=0.05),
               launcher=worker_launcher(home, fallback=no_training)).run()
    finally:
        store.close()


def test_a_caption_job_runs_in_the_worker_with_progress(zlt_home, tmp_path):
    assert KINDS[JobKind.CAPTION].in_thread
    folder = bare_images(tmp_path / "ds", n=5)
    (folder / "img00.txt").write_text("kept\n")
    st = submit_caption(zlt_home, {"path": str(folder), "model": TINY, "max_words": 4}, start_worker=False)
    assert (st["kind"], st["state"], st["images"], st["to_caption"]) == ("caption", "queued", 5, 4)
    _run_worker(zlt_home)
    s = job_status(zlt_home, st["job_id"])
    assert s["state"] == "succeeded" and (s["step"], s["total"]) == (4, 4), s
    assert (s["kind"], s["unit"]) == ("caption", "images")
    from zlt.jobs.display import status_block  # the human view names the folder, not a missing artifact

    text = status_block(s)
    assert "artifact: None" not in text and f"output: {s['artifact_path']}" in text
    evs = job_events(zlt_home, st["job_id"])
    assert evs[0]["type"] == "phase" and evs[0]["phase"] == "captioning"
    assert [e["step"] for e in evs if e["type"] == "progress"][-1] == 4 and evs[-1]["status"] == "succeeded"
    assert (folder / "img00.txt").read_text() == "kept\n"
    assert all(len((folder / f"img0{i}.txt").read_text().split()) <= 4 for i in range(1, 5))
    result = json.loads((Path(s["job_dir"]) / "result.json").read_text())
    assert result["captioned"] == 4 and result["have_caption"] == 1


def test_http_route_fences_the_folder_and_queues(zlt_home, tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    from tests.serve_client import AUTH, serve_client

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    root = tmp_path / "data"
    bare_images(root / "set", n=2)
    outside = bare_images(tmp_path / "outside", n=2)
    with serve_client(zlt_home, [root]) as c:
        r = c.post("/v1/datasets/caption", headers=AUTH, json={"path": str(outside), "model": TINY})
        assert r.status_code == 422 and "caption.path" in r.text and "outside the server's data roots" in r.text
        r = c.post("/v1/datasets/caption", headers=AUTH, json={"path": "set", "model": "/etc"})
        assert r.status_code == 422 and "caption.model" in r.text
        r = c.post("/v1/datasets/caption", headers=AUTH, json={"path": "set", "model": TINY, "colour": 1})
        assert r.status_code == 422
        r = c.post("/v1/datasets/caption", headers=AUTH, json={"path": "set", "model": TINY})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["kind"] == "caption" and body["to_caption"] == 2 and r.headers["location"].endswith(body["job_id"])
        assert c.get(f"/v1/jobs/{body['job_id']}", headers=AUTH).json()["state"] == "queued"


def test_mcp_caption_dataset_then_submit_lora_job(zlt_home, tmp_path, monkeypatch):
    pytest.importorskip("mcp")
    from zlt.serve.intake import Fence
    from zlt.serve.mcp_server import call, make_tools

    monkeypatch.setattr("zlt.jobs.spawn.ensure_worker", lambda home: None)
    root = tmp_path / "data"
    folder = bare_images(root / "bare", n=3)
    tools = {t.name: t for t in make_tools(zlt_home, Fence((root,), None))}
    job, is_error = call(tools["caption_dataset"], {"path": "bare", "model": TINY})
    assert not is_error and job["kind"] == "caption", job
    _run_worker(zlt_home)
    status, is_error = call(tools["get_job_status"], {"job_id": job["job_id"]})
    assert not is_error and status["state"] == "succeeded", status
    events, _ = call(tools["get_job_events"], {"job_id": job["job_id"], "after_seq": 0})
    assert {e["type"] for e in events["events"]} >= {"phase", "progress", "finished"}
    assert len(list(folder.glob("*.txt"))) == 3
    spec = {"name": "bare", "model": {"base": {"name": "zlt/tiny-zimage", "source": "builtin"}},
            "dataset": {"path": "bare", "resolution": 32}, "training": {"backend": "lightning", "max_steps": 2, "warmup_steps": 0},
            "job": {"resources": {"gpu": 0}}, "output": {"save": {"every": 1}}}
    train, is_error = call(tools["submit_lora_job"], {"spec": spec, "skip_preflight": True})
    assert not is_error and train["state"] == "queued", train.get("detail")


def test_an_instruction_model_is_prompted_by_chat_and_only_its_answer_is_kept():
    """The Qwen2.5-VL family's glue (a stand-in processor and model: no weights here): the chat template with the
    instruction, left padding for a batch, and only the tokens after the prompt decoded."""
    import torch

    from zlt.caption.models import Loaded, captioner_info
    from zlt.caption.text import STYLE_INSTRUCTION, prompt_for

    class Processor:
        def __init__(self):
            self.tokenizer = type("Tok", (), {"padding_side": "right"})()
            self.seen: dict = {}

        def apply_chat_template(self, messages, add_generation_prompt):
            self.seen["messages"], self.seen["gen"] = messages, add_generation_prompt
            return "PROMPT"

        def __call__(self, text, images, padding, return_tensors):
            self.seen["padding_side"] = self.tokenizer.padding_side
            batch = {"input_ids": torch.ones(len(images), 5, dtype=torch.long), "pixel_values": torch.zeros(2, 3)}
            return type("Batch", (dict,), {"to": lambda self, device: self})(batch)

        def batch_decode(self, ids, skip_special_tokens):
            return [" ".join(str(int(t)) for t in row) + " " for row in ids]

    class Model:
        def generate(self, **kw):
            ids = kw["input_ids"]
            return torch.cat([ids, torch.full((ids.shape[0], 2), 7)], dim=1)

    info = captioner_info("Qwen/Qwen2.5-VL-7B-Instruct")
    proc = Processor()
    loaded = Loaded(info, Model(), proc, "cpu", torch.bfloat16, "r")
    prompt = prompt_for(info, "style")
    assert loaded.caption([object(), object()], prompt) == ["7 7", "7 7"]
    assert proc.seen["messages"][0]["content"] == [{"type": "image"}, {"type": "text", "text": STYLE_INSTRUCTION}]
    assert proc.seen["gen"] is True and proc.seen["padding_side"] == "left"
