"""Server options, and the start-up checks on where it listens and with which token."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from clinrl.errors import ClinrlError

__all__ = ["ServeSettings", "check_bind", "is_loopback", "read_token"]


@dataclass
class ServeSettings:
    """Everything ``clinrl serve`` can set. ``max_queue`` counts requests waiting for a model slot beyond
    the ``max_concurrency`` running ones; ``timeout_s`` covers waiting plus running; ``log_text`` lets the
    server's own log show prompts and outputs (off: no note text in logs)."""

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
    drg_max_prompt_tokens: int | None = 4096
    model_name: str | None = None
    device: str | None = None
    log_text: bool = False

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_queue < 0 or self.max_concurrency < 1:
            raise ClinrlError("max_body_bytes and max_concurrency must be ≥ 1 and max_queue ≥ 0")
        if self.timeout_s <= 0 or self.max_new_tokens < 1 or self.max_n < 1:
            raise ClinrlError("timeout_s, max_new_tokens and max_n must be positive")

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
    """The bearer token from environment variable ``env`` (None when unset or blank)."""
    value = os.environ.get(env, "").strip()
    return value or None


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
