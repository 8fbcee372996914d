"""The body of `zlt serve` (declared in zlt/cli/serve.py): the HTTP API. FastAPI and uvicorn load here, after
zlt/cli/serve.py checked that the [serve] extra is installed, never for `zlt --help`."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn

from zlt.cli.common import existing_folders, home_path
from zlt.core.errors import EnvNotReadyError
from zlt.jobs.spawn import LocalWorker
from zlt.serve.app import ServeConfig, build_app
from zlt.serve.auth import is_loopback, load_or_create_token, load_or_create_webhook_secret
from zlt.serve.uploads import Limits, MiB


def _listen(host: str, port: int):
    """A bound, listening socket (so a busy port is a clear error and --port 0 picks a free one)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        raise EnvNotReadyError(f"cannot listen on {host}:{port} ({e.strerror or e})",
                               hint="choose another --port (0 picks a free one), or stop what uses it") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn ends a SIGTERM-stopped server by raising that signal again once it has shut down: the process dies
    on the spot, and no `finally` of ours runs. `on_shutdown` therefore runs inside the server's own shutdown,
    after the last connection closed (off the event loop: stopping the worker waits for its jobs to requeue)."""

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets=sockets)
        finally:
            await asyncio.to_thread(self.on_shutdown)


def serve(*, host: str, port: int, data_roots: list[Path] | None, output_roots: list[Path] | None,
          model_roots: list[Path] | None, token_file: Path | None, webhook_secret_file: Path | None,
          callback_allow: list[str], max_upload_mb: int, max_extract_mb: int, no_worker: bool, home: Path | None,
          json_out: bool) -> None:
    home_dir = home_path(home)
    roots = existing_folders(data_roots, "--data-root")
    outs = existing_folders(output_roots, "--output-root")
    models = existing_folders(model_roots, "--model-root")

    def warn(text: str) -> None:
        sys.stderr.write(text + "\n")

    token, token_path = load_or_create_token(home_dir, token_file, warn=warn)
    secret, secret_path = load_or_create_webhook_secret(home_dir, webhook_secret_file, warn=warn)
    limits = Limits(max_upload_bytes=max_upload_mb * MiB, max_extract_bytes=max_extract_mb * MiB)
    cfg = ServeConfig(home=home_dir, token=token, data_roots=roots, output_roots=outs, model_roots=models,
                      limits=limits, webhook_secret=secret, callback_allow=callback_allow or [])
    sock = _listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown}:{bound_port}"
    if not is_loopback(bound_host):
        sys.stderr.write(f"warning: listening on {bound_host}, reachable from other machines; keep the token secret\n")
    info = {"ok": True, "url": url, "openapi": f"{url}/openapi.json", "dashboard": f"{url}/ui/", "token_file": str(token_path),
            "webhook_secret_file": str(secret_path), "data_roots": [str(r) for r in roots], "home": str(home_dir)}
    if json_out:
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
    else:
        sys.stderr.write(f"zlt serve: {url} (token in {token_path}; data roots: "
                         f"{', '.join(map(str, roots)) or 'none, zip uploads only'}); dashboard: {url}/ui/\n")
        sys.stderr.flush()
    config = uvicorn.Config(build_app(cfg), log_level="warning", timeout_graceful_shutdown=5, lifespan="on")
    local = None
    if not no_worker:
        # Someone always runs the queue: a job the reaper requeues is picked up without a new submit.
        local = LocalWorker(home_dir).start()

    def stop_worker() -> None:
        if local is not None:
            local.stop()

    try:
        _Server(config, stop_worker).run(sockets=[sock])
    finally:  # a start-up failure or Ctrl+C twice: the worker still goes (and should serve die outright, the
        stop_worker()  # pipe it holds to the worker closes, and the worker stops by itself)
