"""`zlt serve` (HTTP API) and `zlt mcp` (MCP over stdio). FastAPI, uvicorn and the MCP SDK load only here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from zlt.cli.common import HomeOpt, JsonOpt, command, home_path
from zlt.core.errors import BadInputError, EnvNotReadyError

DataRootOpt = typer.Option(
    None, "--data-root", help="Folder clients may name datasets in (repeatable); without one, only zip uploads.")


def _need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise EnvNotReadyError(f"{', '.join(missing)} not installed: the agent interface needs the [serve] extra",
                               hint="pip install 'zlt[serve]'")


def _folders(paths: list[Path] | None, flag: str) -> list[Path]:
    out = []
    for p in paths or []:
        p = p.expanduser().resolve()
        if not p.is_dir():
            raise BadInputError(f"{flag} {p}: not a folder", hint=f"create it, or drop that {flag}")
        out.append(p)
    return out


def _listen(host: str, port: int):
    """A bound, listening socket (so a busy port is a clear error and --port 0 picks a free one)."""
    import socket

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


@command
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; loopback unless you mean otherwise."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free port, printed at start)."),
    data_roots: list[Path] = DataRootOpt,
    output_roots: list[Path] = typer.Option(
        None, "--output-root", help="Folder a spec's output.registry.path may name besides the server's registry "
        "($ZLT_HOME/artifacts/lora) (repeatable)."),
    model_roots: list[Path] = typer.Option(
        None, "--model-root", help="Folder a spec's model paths may name besides $ZLT_HOME/models (repeatable); "
        "hub ids are always accepted; .safetensors files only."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="Read the bearer token from this file (default: generated into "
        "$ZLT_HOME/serve/token, mode 0600)."),
    webhook_secret_file: Path | None = typer.Option(
        None, "--webhook-secret-file", help="Key that signs webhook bodies (default: $ZLT_HOME/serve/webhook_secret)."),
    max_upload_mb: int = typer.Option(512, "--max-upload-mb", min=1, help="Largest dataset zip accepted, MiB."),
    max_extract_mb: int = typer.Option(2048, "--max-extract-mb", min=1, help="Largest unzipped dataset, MiB."),
    no_worker: bool = typer.Option(
        False, "--no-worker", help="Do not keep a local worker running (GPU hosts run 'zlt worker' themselves)."),
    home: Path | None = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Serve the HTTP API: submit jobs, follow their events (SSE), fetch artifacts. Needs a bearer token."""
    _need("fastapi", "uvicorn", "multipart")
    import uvicorn

    from zlt.serve.app import ServeConfig, build_app
    from zlt.serve.auth import is_loopback, load_or_create_token, load_or_create_webhook_secret
    from zlt.serve.uploads import Limits, MiB

    home_dir = home_path(home)
    roots = _folders(data_roots, "--data-root")
    outs = _folders(output_roots, "--output-root")
    models = _folders(model_roots, "--model-root")

    def warn(text: str) -> None:
        sys.stderr.write(text + "\n")

    token, token_path = load_or_create_token(home_dir, token_file, warn=warn)
    secret, secret_path = load_or_create_webhook_secret(home_dir, webhook_secret_file, warn=warn)
    limits = Limits(max_upload_bytes=max_upload_mb * MiB, max_extract_bytes=max_extract_mb * MiB)
    cfg = ServeConfig(home=home_dir, token=token, data_roots=roots, output_roots=outs, model_roots=models,
                      limits=limits, webhook_secret=secret)
    sock = _listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    url = f"http://{shown}:{bound_port}"
    if not is_loopback(bound_host):
        sys.stderr.write(f"warning: listening on {bound_host}, reachable from other machines; keep the token secret\n")
    info = {"ok": True, "url": url, "openapi": f"{url}/openapi.json", "token_file": str(token_path),
            "webhook_secret_file": str(secret_path), "data_roots": [str(r) for r in roots], "home": str(home_dir)}
    if json_out:
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
    else:
        sys.stderr.write(f"zlt serve: {url} (token in {token_path}; data roots: "
                         f"{', '.join(map(str, roots)) or 'none, zip uploads only'})\n")
        sys.stderr.flush()
    config = uvicorn.Config(build_app(cfg), log_level="warning", timeout_graceful_shutdown=5, lifespan="on")
    local = None
    if not no_worker:
        from zlt.jobs.spawn import LocalWorker

        # Someone always runs the queue: a job the reaper requeues is picked up without a new submit.
        local = LocalWorker(home_dir).start()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        if local is not None:
            local.stop()


@command
def mcp(
    data_roots: list[Path] = typer.Option(
        None, "--data-root", help="Only accept dataset paths inside this folder (repeatable); without one, any "
        "local folder, as the CLI."),
    home: Path | None = HomeOpt,
) -> None:
    """Serve the MCP tools (validate_spec, render_config, submit_lora_job, get_job_status, list_jobs, cancel_job,
    retry_job, get_job_events, list_artifacts, get_artifact) over stdio, for an agent to launch."""
    _need("mcp")
    from zlt.serve.intake import Fence
    from zlt.serve.mcp_server import run_stdio

    home_dir = home_path(home)
    roots = _folders(data_roots, "--data-root")
    # Without --data-root the MCP client is the local user who launched us: any local dataset path, as the CLI.
    fence = Fence(tuple(roots) if roots else None, None, source="<mcp>")
    run_stdio(home_dir, fence)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("mcp")(mcp)
