"""`zlt serve` / `zlt mcp` refusals: stable exit codes and messages that say what to do, never a traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_zlt


def test_a_busy_port_is_exit_3_with_a_hint(tmp_path: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run_zlt("serve", "--port", str(port), "--json", timeout=60)
    assert r.returncode == 3, r.stderr
    out = json.loads(r.stdout)
    assert out["error"] == "env_not_ready" and f"127.0.0.1:{port}" in out["message"]
    assert "--port" in out["hint"]
    assert "Traceback" not in r.stderr


def test_a_missing_data_root_is_exit_2(tmp_path: Path):
    r = run_zlt("serve", "--port", "0", "--data-root", str(tmp_path / "nope"), timeout=60)
    assert r.returncode == 2
    assert "--data-root" in r.stderr and "not a folder" in r.stderr and "Traceback" not in r.stderr
    r = run_zlt("mcp", "--data-root", str(tmp_path / "nope"), timeout=60)
    assert r.returncode == 2 and "--data-root" in r.stderr


def test_a_bad_token_file_is_exit_2(tmp_path: Path):
    f = tmp_path / "tok"
    f.write_text("short")
    r = run_zlt("serve", "--port", "0", "--token-file", str(f), timeout=60)
    assert r.returncode == 2 and "at least 16 characters" in r.stderr


def test_importing_the_cli_loads_no_server_framework():
    code = ("import sys, zlt.cli.app; heavy = [m for m in ('fastapi', 'uvicorn', 'mcp', 'starlette', 'torch') "
            "if m in sys.modules]; print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
