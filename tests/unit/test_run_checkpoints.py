import json
import struct
from pathlib import Path

import pytest

from zlt.run.checkpoints import (
    HeaderError,
    latest_state,
    read_safetensors_header,
    scan_checkpoints,
    write_checkpoints_json,
)


def write_st(path: Path, meta: dict, n_floats: int = 8, truncate: int = 0) -> Path:
    header = {"__metadata__": meta, "w": {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, 4 * n_floats]}}
    raw = json.dumps(header).encode()
    data = struct.pack("<Q", len(raw)) + raw + b"\0" * (4 * n_floats)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) - truncate] if truncate else data)
    return path


def test_header_read_without_torch(tmp_path):
    p = write_st(tmp_path / "a.safetensors", {"training_info": '{"step": 250, "epoch": 1}'})
    assert read_safetensors_header(p)["__metadata__"]["training_info"] == '{"step": 250, "epoch": 1}'
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{not json at all}")
    with pytest.raises(HeaderError):
        read_safetensors_header(tmp_path / "bad.safetensors")


def test_ai_toolkit_layout(tmp_path):
    out = tmp_path / "output"
    write_st(out / "zs" / "zs_000000500.safetensors", {"training_info": '{"step": 500, "epoch": 0}'})
    write_st(out / "zs" / "zs_000000250.safetensors", {"training_info": '{"step": 250, "epoch": 0}'})
    write_st(out / "zs" / "zs.safetensors", {"training_info": '{"step": 1000, "epoch": 2}'})
    write_st(out / "zs" / "samples" / "zs_000000250.safetensors", {})  # not a checkpoint folder
    write_st(out / "zs" / "other_000000100.safetensors", {})  # another job's name
    found = scan_checkpoints(out, "zs")
    assert [(c.step, c.final) for c in found] == [(250, False), (500, False), (1000, True)]
    assert found[-1].epoch == 2 and all(c.valid for c in found)


def test_musubi_layout_resume_offset_and_states(tmp_path):
    out = tmp_path / "output"
    write_st(out / "zs-step00000500.safetensors", {"ss_steps": "500", "ss_epoch": "1"})
    (out / "zs-step00000500-state").mkdir()
    write_st(out / "resume_from_00000500" / "zs-step00000250.safetensors", {"ss_steps": "250"})
    (out / "resume_from_00000500" / "zs-step00000250-state").mkdir()
    write_st(out / "resume_from_00000500" / "zs.safetensors", {"ss_steps": "500"})
    write_st(out / "zs-000002.safetensors", {"ss_steps": "640", "ss_epoch": "2"})
    found = scan_checkpoints(out, "zs")
    assert [(c.step, c.final, c.epoch) for c in found] == [(500, False, 1), (640, False, 2), (750, False, None),
                                                          (1000, True, None)]
    state = latest_state(out, "zs")
    assert state.step == 750 and state.path.name == "zs-step00000250-state"


def test_interrupted_save_is_flagged_invalid(tmp_path):
    p = write_st(tmp_path / "zs_000000100.safetensors", {"training_info": '{"step": 100}'}, truncate=10)
    [ck] = scan_checkpoints(tmp_path, "zs")
    assert not ck.valid and "shorter" in ck.problem and ck.step == 100 and ck.path == p


def test_checkpoints_json(tmp_path):
    write_st(tmp_path / "out" / "zs.safetensors", {"training_info": '{"step": 20}'})
    found = scan_checkpoints(tmp_path / "out", "zs")
    doc = write_checkpoints_json(tmp_path, "ai-toolkit", tmp_path / "out", found)
    on_disk = json.loads((tmp_path / "checkpoints.json").read_text())
    assert on_disk == doc
    assert on_disk["checkpoints"][0]["step"] == 20 and on_disk["checkpoints"][0]["final"] is True
    assert set(on_disk["checkpoints"][0]) >= {"step", "path", "final", "size"}


def test_builtin_trainer_resume_states_are_not_checkpoints(tmp_path):
    # zlt/trainer/checkpoint.py: LoRA files <name>_<step:09d>.safetensors in output/, resume states with the same
    # names in output/state/ (optimizer tensors, header key zlt.state_step, a .json beside each).
    out = tmp_path / "output"
    write_st(out / "zs_000000040.safetensors", {"training_info": '{"step": 40, "epoch": 0}'})
    write_st(out / "zs.safetensors", {"training_info": '{"step": 60, "epoch": 1}'})
    write_st(out / "state" / "zs_000000040.safetensors", {"zlt.state_step": "40"})
    (out / "state" / "zs_000000040.json").write_text("{}")
    write_st(out / "other" / "zs_000000020.safetensors", {"zlt.state_step": "20"})  # a state anywhere: by header
    found = scan_checkpoints(out, "zs")
    assert [(c.path.name, c.step, c.final) for c in found] == [("zs_000000040.safetensors", 40, False),
                                                              ("zs.safetensors", 60, True)]
    assert all(c.path.parent == out for c in found)
