"""zlt's torch-free safetensors reader/writer against the reference implementation (safetensors.numpy)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from tests.fixtures.artifact_jobs import to_bf16_bits, write_bf16
from zlt.core.errors import BadInputError
from zlt.lora.safetensors_io import (
    CorruptFileError,
    RawTensor,
    data_sha256,
    file_data_sha256,
    read_file,
    read_header,
    serialize,
    write_file,
)


def test_reads_reference_file_with_metadata(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.ones((2,), dtype=np.float16)
    save_file({"a": a, "b": b}, str(tmp_path / "x.safetensors"), metadata={"k": "v"})
    tensors, meta = read_file(tmp_path / "x.safetensors")
    assert meta == {"k": "v"}
    assert tensors["a"].dtype == "F32" and tensors["a"].shape == (3, 4)
    np.testing.assert_array_equal(tensors["a"].to_float32(), a)
    np.testing.assert_array_equal(tensors["b"].to_float32(), b.astype(np.float32))


def test_written_file_loads_in_reference_reader(tmp_path):
    a = np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5)
    tensors = {"w.b": RawTensor.from_float32(a, "F16"), "w.a": RawTensor.from_float32(a, "F32")}
    write_file(tmp_path / "y.safetensors", tensors, {"modelspec.title": "ünïcode ok"})
    loaded = load_file(str(tmp_path / "y.safetensors"))
    np.testing.assert_array_equal(loaded["w.a"], a)
    np.testing.assert_array_equal(loaded["w.b"], a.astype(np.float16))
    with safe_open(str(tmp_path / "y.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"modelspec.title": "ünïcode ok"}
    raw = (tmp_path / "y.safetensors").read_bytes()
    assert struct.unpack("<Q", raw[:8])[0] % 8 == 0  # header padded like the reference writer


def test_bf16_read_matches_independent_writer(tmp_path):
    a = np.array([[1.0, -2.5, 3.14159, 1e-8], [65504.0, -0.0, 7.0, 0.1]], dtype=np.float32)
    write_bf16(tmp_path / "bf.safetensors", {"w": a}, {})
    tensors, _ = read_file(tmp_path / "bf.safetensors")
    assert tensors["w"].dtype == "BF16"
    expected = (to_bf16_bits(a).astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(tensors["w"].to_float32(), expected)
    # and our bf16 encoder rounds the same way (nearest even)
    assert RawTensor.from_float32(a, "BF16").data == to_bf16_bits(a).astype("<u2").tobytes()


def test_bf16_keeps_nan_and_inf():
    a = np.array([np.nan, np.inf, -np.inf], dtype=np.float32)
    back = RawTensor.from_float32(a, "BF16").to_float32()
    assert np.isnan(back[0]) and back[1] == np.inf and back[2] == -np.inf


def test_data_hash_is_the_bytes_after_the_header(tmp_path):
    tensors = {"b": RawTensor.from_float32(np.ones((2, 2), np.float32), "F32"),
               "a": RawTensor.from_float32(np.zeros((3,), np.float32), "F16")}
    write_file(tmp_path / "h.safetensors", tensors, {"x": "1"})
    write_file(tmp_path / "h2.safetensors", tensors, {"x": "a different header"})
    assert file_data_sha256(tmp_path / "h.safetensors") == data_sha256(tensors)
    assert file_data_sha256(tmp_path / "h2.safetensors") == data_sha256(tensors)


@pytest.mark.parametrize(
    "cut, message",
    [(5, "shorter than the 8-byte header length"), (20, "truncated header"), (-4, "truncated data")],
)
def test_truncated_files_are_reported_not_parsed(tmp_path, cut, message):
    save_file({"w": np.ones((4, 4), np.float32)}, str(tmp_path / "ok.safetensors"))
    raw = (tmp_path / "ok.safetensors").read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(raw[:cut])
    with pytest.raises(CorruptFileError, match=message) as exc:
        read_header(bad)
    assert str(bad) in exc.value.message and exc.value.hint


def test_garbage_header_is_corrupt(tmp_path):
    bad = tmp_path / "bad.safetensors"
    payload = b"{not json" + b" " * 7
    bad.write_bytes(struct.pack("<Q", len(payload)) + payload)
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        read_header(bad)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 8]}}).encode()
    bad.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(CorruptFileError, match="do not hold shape"):
        read_header(bad)


@pytest.mark.parametrize("name", ["model.pt", "model.ckpt", "pytorch_lora_weights.bin", "x.pth"])
def test_pickle_files_are_refused_before_reading(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"\x80\x04not even opened")
    with pytest.raises(BadInputError, match="pickle"):
        read_header(p)


def test_metadata_values_must_be_strings():
    with pytest.raises(ValueError, match="strings"):
        serialize({"a": RawTensor("F32", (1,), b"\0\0\0\0")}, {"n": 3})  # type: ignore[dict-item]
