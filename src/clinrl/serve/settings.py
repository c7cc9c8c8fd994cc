"""Server options, and the start-up checks on where it listens and with which token."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from clinrl.errors import ClinrlError

__all__ = ["ServeSettings", "check_bind", "check_token", "is_loopback", "read_token", "uvicorn_options"]


@dataclass
class ServeSettings:
    """Everything ``clinrl serve`` can set. ``max_queue`` counts requests waiting for a model slot beyond
    the ``max_concurrency`` running ones; ``timeout_s`` covers waiting plus running; ``log_text`` lets the
    server's own log show prompts and outputs (off: no note text in logs).

    Caps no request can raise: ``max_prompt_tokens`` (a chat or completion prompt, rendered; longer ones are
    refused with 413 before they reach a worker, because one forward pass over the prompt cannot be stopped
    and its cost grows faster than its length), ``drg_max_prompt_tokens`` (a DRG prompt: the course is cut
    to fit; a request may ask for less, never more), and ``max_stop_strings`` / ``max_stop_chars`` (the stop
    strings are matched at every generated token, so their size multiplies the per-token cost)."""

    model: str | None = None
    prm: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token_env: str = "CLINRL_SERVE_TOKEN"
    max_body_bytes: int = 1_000_000
    max_queue: int = 16
    timeout_s: float = 300.0
    max_concurrency: int = 1
    max_new_tokens: int = 2048
    max_n: int = 16
    max_prompt_tokens: int = 8192
    drg_max_prompt_tokens: int = 4096
    max_stop_strings: int = 8
    max_stop_chars: int = 256
    model_name: str | None = None
    device: str | None = None
    log_text: bool = False

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_queue < 0 or self.max_concurrency < 1:
            raise ClinrlError("max_body_bytes and max_concurrency must be ≥ 1 and max_queue ≥ 0")
        if self.timeout_s <= 0 or self.max_new_tokens < 1 or self.max_n < 1:
            raise ClinrlError("timeout_s, max_new_tokens and max_n must be positive")
        caps = (self.max_prompt_tokens, self.drg_max_prompt_tokens, self.max_stop_chars)
        if min(caps) < 1 or self.max_stop_strings < 0:
            raise ClinrlError("max_prompt_tokens, drg_max_prompt_tokens and max_stop_chars must be ≥ 1 and "
                              "max_stop_strings ≥ 0")  # fmt: skip

    @property
    def served_name(self) -> str:
        """The model id shown by ``/v1/models`` and in responses (default: the model folder's name)."""
        return self.model_name or (Path(self.model).name if self.model else "none")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(env: str) -> str | None:
    """The bearer token from environment variable ``env`` (None when unset or blank); see :func:`check_token`."""
    value = os.environ.get(env, "").strip()
    return check_token(value, f"${env}") if value else None


def check_token(token: str, where: str = "the token") -> str:
    """``token`` unchanged if a client can send it, else ClinrlError (the message never shows the token).

    HTTP header values are ASCII in practice (RFC 9110 treats other bytes as opaque), and bearer tokens are
    ASCII by their grammar (RFC 6750), so a token with non-ASCII, white-space or control characters could
    never match any request: the server would refuse every call. Refusing it at start-up says why."""
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise ClinrlError(f"{where} holds characters a client cannot send in an Authorization header "
                          "(non-ASCII, white space or control characters); use printable ASCII, "
                          "e.g. the output of `openssl rand -hex 32`")  # fmt: skip
    return token


def uvicorn_options(host: str, port: int) -> dict[str, object]:
    """Keyword arguments for ``uvicorn.run``. uvicorn's access log is off: it prints the path *with* its
    query string, so a client that puts its token (or note text) in the URL would have it logged. The
    server's own one-line request log (:class:`~clinrl.serve.guard.Guard`) shows the path without it."""
    return {"host": host, "port": port, "log_level": "info", "access_log": False}


def check_bind(host: str, token: str | None, token_env: str = "CLINRL_SERVE_TOKEN") -> str | None:
    """Refuse a non-loopback ``host`` without a token (ClinrlError); return a warning for loopback without one."""
    if token:
        return None
    if not is_loopback(host):
        raise ClinrlError(
            f"refusing to listen on {host} without a token: set ${token_env} (clients send it as "
            "'Authorization: Bearer …') or listen on 127.0.0.1"
        )
    return f"no token in ${token_env}: any local user or process can call this server"
