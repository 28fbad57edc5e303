"""Who may use the console: the holder of its token, from a page the console served itself.

The console acts as the operator (its kill, revive and resolve buttons publish operator-signed
events), so it is guarded like the operator's key:

- **The token** is 32 random bytes in ``console.token`` under the data dir (mode 0600, written
  atomically, never overwritten): whoever can read it could read the operator's key next to it.
  ``swarmlog console --url`` prints the login link that carries it; no log ever does.
- **The session cookie** holds an HMAC of the token, never the token: ``HttpOnly`` (no script
  reads it), ``SameSite=Strict`` (no other site's page sends it), named after the port (two
  consoles on one host keep apart).
- **Every state-changing request** must come from the console's own pages: its ``Origin`` (or,
  when a browser sends none, ``Sec-Fetch-Site: same-origin``) must be the console itself, so a
  page elsewhere cannot make the browser press a button (cross-site request forgery).
- **The Host header** must name the address the console is bound to (or ``localhost``), so a
  hostile DNS name rebound to 127.0.0.1 reaches nothing (DNS rebinding).

The checks are pure functions of the request's headers, tested without a server.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path

from swarmlog.files import write_private

__all__ = [
    "TOKEN_FILE",
    "cookie_name",
    "host_allowed",
    "load_token",
    "request_is_same_origin",
    "session_value",
    "token_matches",
]

TOKEN_FILE = "console.token"
_SESSION_DOMAIN = b"swarmlog/console-session/v1\x00"


def load_token(data_dir: Path) -> str:
    """The console's token, made on first use (0600, atomic; two consoles racing agree)."""
    path = data_dir / TOKEN_FILE
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another console made it first: use it
            write_private(path, secrets.token_urlsafe(32) + "\n", exclusive=True)
    return path.read_text().strip()


def session_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token (the cookie never is the token)."""
    return hmac.new(token.encode(), _SESSION_DOMAIN, hashlib.sha256).hexdigest()


def token_matches(token: str, given: str | None) -> bool:
    """``given`` is the token (compared in constant time)."""
    return given is not None and hmac.compare_digest(token.encode(), given.encode())


def cookie_name(port: int) -> str:
    """The session cookie's name: browsers keep cookies per host, not per port."""
    return f"swarmlog_console_{port}"


def host_allowed(host_header: str | None, bound_host: str, port: int) -> bool:
    """The request names this console: ``bound_host:port``, or loopback's names at ``port``."""
    if not host_header:
        return False
    names = {bound_host, "127.0.0.1", "localhost", "[::1]"}
    return host_header in {f"{name}:{port}" for name in names}


def request_is_same_origin(headers: Mapping[str, str], host_header: str) -> bool:
    """A state-changing request comes from a page of this console (not another site's)."""
    origin = headers.get("origin")
    if origin is not None and origin != "null":
        return origin == f"http://{host_header}"
    # No origin, or an opaque one: only the browser's own word that the page was ours will do
    # (a page cannot set Sec-Fetch-Site; a sandboxed frame elsewhere gets "cross-site").
    return headers.get("sec-fetch-site") == "same-origin"
