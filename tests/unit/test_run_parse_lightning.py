import json

from zlt.backends.lightning.parse import parse_lightning
from zlt.core.events import Checkpoint, Oom, Progress, event_to_dict


def test_json_event_lines_round_trip():
    ev = Progress(step=3, total=10, loss=0.5, lr=1e-4, it_s=2.0, elapsed_s=1.5, eta_s=3.5)
    assert parse_lightning(json.dumps(event_to_dict(ev))) == ev
    ck = {"type": "checkpoint", "path": "/o/x_000000003.safetensors", "step": 3, "job_id": "ignored"}
    assert parse_lightning(json.dumps(ck)) == Checkpoint(path="/o/x_000000003.safetensors", step=3)


def test_non_event_lines_use_generic_checks():
    assert parse_lightning('{"type": "nonsense"}') is None
    assert parse_lightning("{not json") is None
    assert parse_lightning("[zlt.trainer] training: step 1") is None
    ev = parse_lightning("RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB")
    assert isinstance(ev, Oom) and ev.fatal
