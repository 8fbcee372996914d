"""`zlt serve` (HTTP API) and `zlt mcp` (MCP over stdio). FastAPI, uvicorn and the MCP SDK load only when these run
(the body of `zlt serve` is zlt/cli/impl/serve.py)."""

from __future__ import annotations

from pathlib import Path

import typer

from zlt.cli.common import HomeOpt, JsonOpt, command, existing_folders, home_path
from zlt.core.errors import EnvNotReadyError
from zlt.core.paths import default_registry_dir

DataRootOpt = typer.Option(
    None, "--data-root", help="Folder clients may name datasets in (repeatable); without one, only zip uploads.")
OutputRootOpt = typer.Option(
    None, "--output-root", help="Folder a spec's output.registry.path may name besides the server's registry "
    "($ZLT_HOME/artifacts/lora) (repeatable).")
ModelRootOpt = typer.Option(
    None, "--model-root", help="Folder a spec's model paths may name besides $ZLT_HOME/models (repeatable); "
    "hub ids are always accepted; .safetensors files only.")


def _need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise EnvNotReadyError(f"{', '.join(missing)} not installed: the agent interface needs the [serve] extra",
                               hint="pip install 'zlt[serve]'")


@command
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; loopback unless you mean otherwise."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port (0: any free port, printed at start)."),
    data_roots: list[Path] = DataRootOpt,
    output_roots: list[Path] = OutputRootOpt,
    model_roots: list[Path] = ModelRootOpt,
    token_file: Path | None = typer.Option(
        None, "--token-file", help="Read the bearer token from this file (default: generated into "
        "$ZLT_HOME/serve/token, mode 0600)."),
    webhook_secret_file: Path | None = typer.Option(
        None, "--webhook-secret-file", help="Key that signs webhook bodies (default: $ZLT_HOME/serve/webhook_secret)."),
    callback_allow: list[str] = typer.Option(
        None, "--callback-allow", envvar="ZLT_CALLBACK_ALLOW", help="Network (CIDR), address or host name "
        "(*.domain for all under it) a job.callback_url may reach besides public addresses (repeatable; the env var "
        "takes several, space-separated); loopback, private and link-local receivers are refused otherwise."),
    max_upload_mb: int = typer.Option(512, "--max-upload-mb", min=1, help="Largest dataset zip accepted, MiB."),
    max_extract_mb: int = typer.Option(2048, "--max-extract-mb", min=1, help="Largest unzipped dataset, MiB."),
    no_worker: bool = typer.Option(
        False, "--no-worker", help="Do not keep a local worker running (GPU hosts run 'zlt worker' themselves)."),
    home: Path | None = HomeOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Serve the HTTP API: submit jobs, follow their events (SSE), fetch artifacts. Needs a bearer token."""
    _need("fastapi", "uvicorn", "multipart")
    from zlt.cli.impl.serve import serve as run  # lazy: pulls fastapi and uvicorn

    run(host=host, port=port, data_roots=data_roots, output_roots=output_roots, model_roots=model_roots,
        token_file=token_file, webhook_secret_file=webhook_secret_file, callback_allow=callback_allow or [],
        max_upload_mb=max_upload_mb, max_extract_mb=max_extract_mb, no_worker=no_worker, home=home, json_out=json_out)


def mcp_fence(home: Path, data_roots: list[Path], output_roots: list[Path], model_roots: list[Path]):
    """What an MCP client may name. With --data-root the session is fenced as `zlt serve` is: datasets in the data
    roots, registries in $ZLT_HOME's registry or --output-root, model files in $ZLT_HOME/models or --model-root.
    Without any option the client is the local user who launched us: any local path, as the CLI; --output-root or
    --model-root alone fences that kind only."""
    from zlt.serve.intake import Fence  # lazy: pulls pydantic (the spec models)

    fenced = bool(data_roots)
    registry, models_dir = default_registry_dir(home), home / "models"
    outputs = (registry, *[p for p in output_roots if p != registry]) if fenced or output_roots else None
    models = (models_dir, *[p for p in model_roots if p != models_dir]) if fenced or model_roots else None
    return Fence(tuple(data_roots) if fenced else None, outputs, model_roots=models, source="<mcp>")


@command
def mcp(
    data_roots: list[Path] = typer.Option(
        None, "--data-root", help="Only accept dataset paths inside this folder (repeatable), and fence output and "
        "model paths as `zlt serve` does; without one, any local path, as the CLI."),
    output_roots: list[Path] = OutputRootOpt,
    model_roots: list[Path] = ModelRootOpt,
    home: Path | None = HomeOpt,
) -> None:
    """Serve the MCP tools (validate_spec, render_config, submit_lora_job, get_job_status, list_jobs, cancel_job,
    retry_job, get_job_events, list_artifacts, get_artifact) over stdio, for an agent to launch."""
    _need("mcp")
    from zlt.serve.mcp_server import run_stdio  # lazy: pulls the MCP SDK

    home_dir = home_path(home)
    fence = mcp_fence(home_dir, existing_folders(data_roots, "--data-root"),
                      existing_folders(output_roots, "--output-root"), existing_folders(model_roots, "--model-root"))
    run_stdio(home_dir, fence)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("mcp")(mcp)
