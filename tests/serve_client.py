"""What the serve tests share: the in-process HTTP client (one token, one way to open the app), and the reader of a
`zlt serve` subprocess's first line (its --json start-up record)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def serve_client(home: Path, roots: list[Path], **options: Any) -> Iterator[Any]:
    """A fastapi TestClient on `create_app(home, roots, TOKEN, ...)`, webhooks unsigned unless `options` say so."""
    from fastapi.testclient import TestClient

    from zlt.serve.app import create_app

    with TestClient(create_app(home, roots, TOKEN, **{"webhook_secret": None, **options})) as c:
        yield c


def read_first_line(proc: subprocess.Popen, timeout_s: float) -> str:
    """The first stdout line of a started `zlt serve --json`, or kill it and fail saying why it did not start."""
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout_s)
    if not box or not box[0]:
        proc.kill()
        raise AssertionError(f"zlt serve did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
    return box[0]
