"""Bearer token and webhook secret files of `zlt serve`."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from zlt.core.errors import BadInputError
from zlt.serve.auth import bearer_matches, is_loopback, load_or_create_token, load_or_create_webhook_secret


def test_token_is_generated_once_with_mode_0600(tmp_path: Path):
    token, path = load_or_create_token(tmp_path)
    assert path == tmp_path / "serve" / "token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(token) >= 32
    assert load_or_create_token(tmp_path)[0] == token  # stable across restarts


def test_a_loosened_token_file_is_tightened(tmp_path: Path):
    _, path = load_or_create_token(tmp_path)
    path.chmod(0o644)
    load_or_create_token(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_file_given_by_the_operator(tmp_path: Path):
    f = tmp_path / "tok"
    f.write_text("  s3cret-token-0123456789  \n")
    assert load_or_create_token(tmp_path, f) == ("s3cret-token-0123456789", f)
    f.write_text("short")
    with pytest.raises(BadInputError, match="--token-file .*at least 16"):
        load_or_create_token(tmp_path, f)
    with pytest.raises(BadInputError, match="not found"):
        load_or_create_token(tmp_path, tmp_path / "missing")


def test_webhook_secret_differs_from_the_token(tmp_path: Path):
    assert load_or_create_webhook_secret(tmp_path)[0] != load_or_create_token(tmp_path)[0]


@pytest.mark.parametrize("header,ok", [
    ("Bearer abcdefghijklmnopqrstu", True), ("bearer  abcdefghijklmnopqrstu ", True),
    ("Bearer abcdefghijklmnopqrstv", False), ("Basic abcdefghijklmnopqrstu", False), ("", False), (None, False),
    ("Bearer", False),
])
def test_bearer_matches(header, ok):
    assert bearer_matches(header, "abcdefghijklmnopqrstu") is ok


@pytest.mark.parametrize("host,ok", [("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("localhost", True),
                                     ("0.0.0.0", False), ("192.168.1.2", False), ("example.com", False)])
def test_is_loopback(host, ok):
    assert is_loopback(host) is ok
