"""Secrets of the server: the bearer token every route but /healthz needs, and the webhook signing key.

Both are generated on first start into `<ZLT_HOME>/serve/` with mode 0600 (the folder 0700), or read from a
file the operator names. Comparison is constant-time.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from zlt.core.errors import BadInputError
from zlt.core.fsutil import atomic_write_text

TOKEN_FILE = "token"
WEBHOOK_SECRET_FILE = "webhook_secret"
MIN_SECRET_CHARS = 16


def serve_dir(home: Path) -> Path:
    """`<ZLT_HOME>/serve`: secrets, uploads and webhook bookkeeping of the server."""
    d = Path(home) / "serve"
    d.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(d, 0o700)
    except OSError:
        pass  # a folder we do not own (shared home): the 0600 files still protect the secrets
    return d


def _read_secret(path: Path, what: str, flag: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise BadInputError(f"{flag} {path}: file not found", hint=f"write the {what} into it, or leave {flag} out") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{flag} {path}: cannot read it ({e})", hint="check its permissions") from None
    if len(text) < MIN_SECRET_CHARS or any(c.isspace() for c in text):
        raise BadInputError(
            f"{flag} {path}: the {what} must be one line of at least {MIN_SECRET_CHARS} characters without spaces",
            hint="generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return text


def loose_mode_warning(path: Path, what: str) -> str | None:
    """A warning when others may read a secret file the operator named (we do not chmod their file)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return (f"warning: {path} (the {what}) has mode {mode:04o}: other users can read it; "
                f"run: chmod 600 {path}")
    return None


def load_or_create_secret(home: Path, name: str, given: Path | None = None, *, what: str, flag: str,
                          warn=None) -> tuple[str, Path]:
    """The secret from `given`, else from `<home>/serve/<name>`, generating it (mode 0600) when absent.

    `warn(text)` hears about a named file others can read."""
    if given is not None:
        path = Path(given).expanduser()
        secret = _read_secret(path, what, flag)
        note = loose_mode_warning(path, what)
        if note and warn is not None:
            warn(note)
        return secret, path
    path = serve_dir(home) / name
    if not path.exists():
        atomic_write_text(path, secrets.token_urlsafe(32) + "\n", mode=0o600)
    elif stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)  # someone loosened it; a secret readable by others is not a secret
    return _read_secret(path, what, flag), path


def load_or_create_token(home: Path, token_file: Path | None = None, warn=None) -> tuple[str, Path]:
    """(token, file it lives in): `--token-file`, else `<ZLT_HOME>/serve/token`, generated on first start."""
    return load_or_create_secret(home, TOKEN_FILE, token_file, what="token", flag="--token-file", warn=warn)


def load_or_create_webhook_secret(home: Path, secret_file: Path | None = None, warn=None) -> tuple[str, Path]:
    """(key, file) used to sign webhook bodies with HMAC-SHA256."""
    return load_or_create_secret(
        home, WEBHOOK_SECRET_FILE, secret_file, what="webhook secret", flag="--webhook-secret-file", warn=warn
    )


def bearer_matches(header: str | None, token: str) -> bool:
    """Does an `Authorization` header carry exactly this bearer token? Constant-time in the token."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode("utf-8"), token.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
