"""Schemathesis over the live server's OpenAPI document: bounded examples, and no request may produce a 500."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("schemathesis")

pytestmark = [pytest.mark.slow, pytest.mark.serve]

# Conformance as well as "no 500"; positive_data_acceptance is left out on purpose: a schema-valid spec is still
# refused when its dataset folder does not exist on the server, which no schema can express.
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance," \
         "ignored_auth,unsupported_method"


def schemathesis_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    return [str(exe)] if exe.exists() else [shutil.which("schemathesis") or "schemathesis"]


def test_schemathesis_finds_no_server_error(tmp_path: Path):
    home, root = tmp_path / "home", tmp_path / "data"
    root.mkdir()
    (root / "empty").mkdir()  # a dataset folder without images: submits reach the library and are refused there
    env = {**os.environ, "ZLT_HOME": str(home), "ZLT_CONFIG": str(home / "config.toml"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "zlt", "serve", "--port", "0", "--json", "--data-root", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60)
        assert box and box[0], "zlt serve did not start"
        info = json.loads(box[0])
        token = Path(info["token_file"]).read_text().strip()
        run = subprocess.run(
            [*schemathesis_cmd(), "run", info["openapi"], "-H", f"Authorization: Bearer {token}",
             "--phases", "examples,coverage,fuzzing", "--max-examples", "5", "--checks", CHECKS,
             "--request-timeout", "10", "--generation-database", "none", "--seed", "7", "--workers", "1",
             "--no-color", "--max-failures", "20"],
            capture_output=True, text=True, timeout=400, cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert "Server error" not in run.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
