"""The in-process HTTP client the serve tests share: one token, one way to open the app."""

from __future__ import annotations

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
