"""`captions.jsonl`: one record per caption zlt wrote, in the dataset folder; also the resume index.

A record holds the image (its path and content sha256), the captioner (name, revision), the prompt (task token or
instruction) and preset, the time, the model's raw output and the final caption. A record's key is the image
content, the model and the prompt (the way the prepared-dataset cache keys a folder by its content and parameters):
a later run finds the model's output for an unchanged image under the same key and never runs the model for it
again. Lines are appended one at a time; a torn last line (a run killed mid-write) is ignored when reading.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from zlt.core.fsutil import sha256_json

RECORDS = "captions.jsonl"


def record_key(sha256: str, model: str, prompt: str) -> str:
    return sha256_json({"image": sha256, "model": model, "prompt": prompt})[:32]


def read_records(folder: Path) -> list[dict[str, Any]]:
    path = Path(folder) / RECORDS
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("key"), str):
            out.append(rec)
    return out


def index(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """key -> the latest record with that key."""
    return {rec["key"]: rec for rec in records}


class RecordWriter:
    """Appends records to `captions.jsonl`: held until `flush` (once per batch), then written at once; synced to
    disk at most every SYNC_S seconds and at the end (`flush(sync=True)`): a record lost to a crash only costs a
    re-caption of that image, and its sidecar is there anyway."""

    SYNC_S = 5.0

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / RECORDS
        self.count = 0
        self.pending: list[str] = []
        self.synced = time.monotonic()

    def write(self, rec: dict[str, Any]) -> None:
        stamp = rec.get("time") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.pending.append(json.dumps({**rec, "time": stamp}, ensure_ascii=False))

    def flush(self, sync: bool = False) -> None:
        if not self.pending:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in self.pending))
            fh.flush()
            if sync or time.monotonic() - self.synced >= self.SYNC_S:
                os.fsync(fh.fileno())
                self.synced = time.monotonic()
        self.count += len(self.pending)
        self.pending.clear()
