"""Read and write .safetensors without torch: header-only reads, raw tensor bytes, bf16 by hand.

The format: 8-byte little-endian header length N, N bytes of JSON (`{name: {dtype, shape, data_offsets}}` plus
an optional `__metadata__` of string values), then the data buffer. zlt reads nothing else: pickle files
(.pt/.ckpt/.bin) can run code when loaded, so they are refused by name before a byte is read.

numpy has no bfloat16, and ai-toolkit and musubi save bf16 by default, so tensors stay raw bytes here and
are widened to float32 only when arithmetic is needed (folding alpha); writes keep the source dtype.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_bytes
from zlt.core.safetensors_guard import ensure_safetensors_path

if TYPE_CHECKING:
    import numpy as np

DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_NUMPY_FLOAT = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's own limit


class CorruptFileError(BadInputError):
    """A .safetensors file that cannot be parsed: truncated, wrong header, offsets outside the file."""

    kind = "corrupt_file"


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int  # offsets relative to the data buffer
    end: int


@dataclass(frozen=True)
class Header:
    path: Path
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo]
    data_offset: int  # absolute offset of the data buffer in the file
    file_size: int


@dataclass(frozen=True)
class RawTensor:
    """One tensor as its dtype tag, shape and little-endian bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def to_float32(self) -> np.ndarray:
        """The values as a float32 array of `shape` (float dtypes only)."""
        import numpy as np

        if self.dtype == "BF16":
            bits = np.frombuffer(self.data, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif self.dtype in _NUMPY_FLOAT:
            arr = np.frombuffer(self.data, dtype=_NUMPY_FLOAT[self.dtype]).astype(np.float32)
        else:
            raise BadInputError(f"tensor dtype {self.dtype} is not a float type", hint="LoRA weights are F16/BF16/F32")
        return arr.reshape(self.shape)

    @classmethod
    def from_float32(cls, arr: np.ndarray, dtype: str) -> RawTensor:
        """Store float32 values as `dtype`; bf16 rounds to nearest even like torch does."""
        import numpy as np

        a = np.ascontiguousarray(arr, dtype=np.float32)
        if dtype == "BF16":
            u = a.view(np.uint32)
            rounded = ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
            nan = np.isnan(a)
            if nan.any():  # keep NaN a (quiet) NaN instead of rounding it to infinity
                rounded[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
            data = rounded.astype("<u2").tobytes()
        elif dtype in _NUMPY_FLOAT:
            data = a.astype(_NUMPY_FLOAT[dtype]).tobytes()
        else:
            raise BadInputError(f"cannot store float values as {dtype}")
        return cls(dtype=dtype, shape=tuple(int(d) for d in a.shape), data=data)


def _corrupt(path: Path, what: str) -> CorruptFileError:
    return CorruptFileError(
        f"{path}: corrupt safetensors file: {what}",
        hint="the file was cut short or overwritten (e.g. the trainer was killed while saving); use another checkpoint",
    )


def read_header(path: Path) -> Header:
    """Parse and check the header without reading the data. Raises CorruptFileError, never JSON/struct errors."""
    path = Path(path)
    ensure_safetensors_path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise _corrupt(path, f"{size} bytes, shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if n < 2 or n > MAX_HEADER_BYTES:
                raise _corrupt(path, f"header length {n} is not plausible")
            if n > size - 8:
                raise _corrupt(path, f"header needs {n} bytes but only {size - 8} follow (truncated header)")
            raw = fh.read(n)
    except FileNotFoundError:
        raise BadInputError(f"{path}: file not found") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _corrupt(path, "header is not valid JSON") from None
    if not isinstance(obj, dict):
        raise _corrupt(path, "header is not a JSON object")
    meta = obj.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _corrupt(path, "__metadata__ must map strings to strings")
    data_len = size - 8 - n
    tensors: dict[str, TensorInfo] = {}
    for name, info in obj.items():
        tensors[name] = _tensor_info(path, name, info, data_len)
    return Header(path=path, metadata=dict(meta), tensors=tensors, data_offset=8 + n, file_size=size)


def _tensor_info(path: Path, name: str, info: object, data_len: int) -> TensorInfo:
    if not isinstance(info, dict):
        raise _corrupt(path, f"entry {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise _corrupt(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _corrupt(path, f"tensor {name!r} has a bad shape {shape!r}")
    if (
        not isinstance(offsets, list) or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets) or not 0 <= offsets[0] <= offsets[1]
    ):
        raise _corrupt(path, f"tensor {name!r} has bad data_offsets {offsets!r}")
    numel = 1
    for d in shape:
        numel *= d
    start, end = offsets
    if end - start != numel * DTYPE_SIZES[dtype]:
        raise _corrupt(path, f"tensor {name!r}: {end - start} bytes do not hold shape {shape} of {dtype}")
    if end > data_len:
        raise _corrupt(path, f"tensor {name!r} ends at byte {end} but the data has {data_len} (truncated data)")
    return TensorInfo(dtype=dtype, shape=tuple(shape), start=start, end=end)


def read_metadata(path: Path) -> dict[str, str]:
    return read_header(path).metadata


def read_file(path: Path) -> tuple[dict[str, RawTensor], dict[str, str]]:
    """All tensors (raw bytes) and the metadata."""
    header = read_header(path)
    with open(header.path, "rb") as fh:
        fh.seek(header.data_offset)
        buf = fh.read()
    tensors = {
        name: RawTensor(dtype=t.dtype, shape=t.shape, data=buf[t.start:t.end]) for name, t in header.tensors.items()
    }
    return tensors, header.metadata


def _layout(tensors: dict[str, RawTensor]) -> tuple[list[str], dict[str, dict]]:
    names = sorted(tensors)
    entries: dict[str, dict] = {}
    offset = 0
    for name in names:
        t = tensors[name]
        if len(t.data) != t.numel * DTYPE_SIZES[t.dtype]:
            raise ValueError(f"tensor {name}: {len(t.data)} bytes do not match shape {t.shape} of {t.dtype}")
        entries[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(t.data)]}
        offset += len(t.data)
    return names, entries


def data_sha256(tensors: dict[str, RawTensor]) -> str:
    """sha256 of the data buffer `serialize` writes (what kohya calls the model hash: metadata-independent)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(tensors[name].data)
    return h.hexdigest()


def file_data_sha256(path: Path) -> str:
    """sha256 of a file's data buffer, everything after the header."""
    header = read_header(path)
    h = hashlib.sha256()
    with open(header.path, "rb") as fh:
        fh.seek(header.data_offset)
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def serialize(tensors: dict[str, RawTensor], metadata: dict[str, str] | None = None) -> bytes:
    """A complete .safetensors file: tensors sorted by name, header padded with spaces to 8 bytes."""
    names, entries = _layout(tensors)
    header: dict[str, object] = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise ValueError(f"safetensors metadata values must be strings: {bad[:5]}")
        header["__metadata__"] = metadata
    header.update(entries)
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + b"".join(tensors[n].data for n in names)


def write_file(path: Path, tensors: dict[str, RawTensor], metadata: dict[str, str] | None = None) -> None:
    atomic_write_bytes(Path(path), serialize(tensors, metadata))
