"""Secrets of the server: the bearer token every route but /healthz needs, and the webhook signing key.

Both are generated on first start into `<ZLT_HOME>/serve/` with mode 0600 (the folder 0700), or read from a
file the operator names. Comparison is constant-time.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any

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


# --- The dashboard's session: a login form trades the token for a cookie (zlt/serve/dashboard). ---
# The cookie is `<issued>.<nonce>.<mac>`, the MAC keyed by the server token: no session table, and a new token ends
# every session. The CSRF token of a session is another MAC of its nonce, so a form's token is tied to the cookie.
SESSION_COOKIE = "zlt_session"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _mac(token: str, purpose: str, text: str) -> str:
    return hmac.new(token.encode("utf-8"), f"{purpose}:{text}".encode(), "sha256").hexdigest()


def token_matches(given: str | None, token: str) -> bool:
    """Is `given` (what the login form got) the server token? Constant-time in the token."""
    return bool(given) and hmac.compare_digest(str(given).strip().encode("utf-8"), token.encode("utf-8"))


def new_session(token: str, now: float | None = None) -> str:
    """A fresh session cookie value for a login that gave the right token."""
    issued = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(18)
    return f"{issued}.{nonce}.{_mac(token, 'session', issued + '.' + nonce)}"


def session_nonce(cookie: str | None, token: str, now: float | None = None) -> str | None:
    """The nonce of a valid, unexpired session cookie; None for a missing, forged or stale one."""
    if not cookie or cookie.count(".") != 2:
        return None
    issued, nonce, mac = cookie.split(".")
    if not hmac.compare_digest(mac.encode("utf-8"), _mac(token, "session", issued + "." + nonce).encode("utf-8")):
        return None
    if not issued.isdigit() or (time.time() if now is None else now) - int(issued) > SESSION_MAX_AGE_S:
        return None
    return nonce


def csrf_token(cookie: str | None, token: str) -> str | None:
    """The CSRF token the session's forms carry (None without a valid session)."""
    nonce = session_nonce(cookie, token)
    return None if nonce is None else _mac(token, "csrf", nonce)


def csrf_matches(cookie: str | None, given: str | None, token: str) -> bool:
    expected = csrf_token(cookie, token)
    return expected is not None and bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def refusal(method: str, headers: Any, cookies: dict[str, str], token: str) -> str | None:
    """The one rule of every route but /healthz, the dashboard's login page and its static files: the bearer header,
    or a session cookie; an unsafe method by cookie also needs the session's CSRF token (header `X-CSRF-Token`; a
    dashboard form sends it as the field `csrf`, checked by the dashboard). None: allowed; "token": no valid token or
    session; "csrf": a valid session without the right CSRF token."""
    if bearer_matches(headers.get("authorization"), token):
        return None
    cookie = cookies.get(SESSION_COOKIE)
    if session_nonce(cookie, token) is None:
        return "token"
    if method.upper() in SAFE_METHODS or csrf_matches(cookie, headers.get(CSRF_HEADER), token):
        return None
    return "csrf"
