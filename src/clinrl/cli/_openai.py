"""The OpenAI-compatible endpoint options, defined once for every command that can call an endpoint
(``drg distill-cot``, ``drg eval``/``predict --backend openai``, ``prm synth-errors``/``structure --backend
openai``).

A command declares a parameter ``openai: OpenAIOptions`` and is decorated with :func:`openai_options`; the
decorator replaces that parameter with the options below (so typer parses and documents them) and hands the
command one :class:`OpenAIOptions`. ``--model`` is not part of the block: it means a teacher's name in one
command and a local folder in another, so each command keeps its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from clinrl.cli._common import alias, hidden_alias, option_block

__all__ = ["OpenAIOptions", "openai_options"]


@dataclass(frozen=True)
class OpenAIOptions:
    """Where requests go and how they are made; :meth:`backend` builds the client."""

    endpoint: Optional[str] = None
    api_key_env: str = "CLINRL_API_KEY"
    concurrency: int = 8
    timeout_s: float = 120.0
    request_retries: int = 5
    cache_dir: Optional[Path] = None

    def backend(self, model: Optional[str], *, sent: str = "text") -> Any:
        """An :class:`clinrl.llm.openai_client.OpenAIBackend`; refuses a missing ``--endpoint``/``--model``
        with one line that says what would be sent there (``sent``: "course text", "note text")."""
        from clinrl.errors import ClinrlError
        from clinrl.llm.backends import get_backend

        if not self.endpoint or not model:
            raise ClinrlError(
                f"an OpenAI-compatible endpoint needs --endpoint URL and --model NAME ({sent} is sent there)"
            )
        extra = {"cache_dir": str(self.cache_dir)} if self.cache_dir is not None else {}
        return get_backend(
            "openai", endpoint=self.endpoint, model=model, api_key_env=self.api_key_env,
            max_concurrency=self.concurrency, timeout_s=self.timeout_s, max_retries=self.request_retries, **extra,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """For reports: the endpoint settings (never a key: only the variable's name)."""
        return {"endpoint": self.endpoint, "api_key_env": self.api_key_env, "concurrency": self.concurrency,
                "timeout_s": self.timeout_s, "request_retries": self.request_retries}  # fmt: skip


# name -> (annotation, typer option), shown in their own help panel.
_PANEL = "OpenAI-compatible endpoint"
_OPTIONS: dict[str, tuple[Any, Any]] = {
    "endpoint": (Optional[str], typer.Option(None, "--endpoint", help="OpenAI-compatible base URL (text is sent there).", rich_help_panel=_PANEL)),
    "api_key_env": (str, typer.Option("CLINRL_API_KEY", "--api-key-env", help="Environment variable holding the endpoint's key.", rich_help_panel=_PANEL)),
    "concurrency": (int, typer.Option(8, "--concurrency", min=1, help="Requests in flight at once.", rich_help_panel=_PANEL)),
    "timeout_s": (float, typer.Option(120.0, "--timeout-s", min=0.001, help="Seconds per request.", rich_help_panel=_PANEL)),
    "request_retries": (int, typer.Option(5, "--request-retries", min=0, help="Retries of a failed request (backoff 1, 2, 4 … s).", rich_help_panel=_PANEL)),
    "cache_dir": (Optional[Path], typer.Option(None, "--cache-dir", help="On-disk response cache (a rerun resumes from it).", rich_help_panel=_PANEL)),
    "old_timeout": (Optional[float], hidden_alias("--timeout", "--timeout-s", min=0.001)),
}  # fmt: skip


def openai_options(func: Callable[..., Any] | None = None, *, endpoint_required: bool = False) -> Any:
    """Give ``func`` the endpoint options in place of its ``openai: OpenAIOptions`` parameter.

    ``endpoint_required``: the command always calls an endpoint (``distill-cot``), so typer itself refuses a
    missing ``--endpoint``; elsewhere it is needed only with ``--backend openai`` (:meth:`OpenAIOptions.backend`
    says so)."""
    if func is None:
        return functools.partial(openai_options, endpoint_required=endpoint_required)
    options = dict(_OPTIONS)
    if endpoint_required:
        options["endpoint"] = (
            str,
            typer.Option(
                ..., "--endpoint", help="OpenAI-compatible base URL (text is sent there).", rich_help_panel=_PANEL
            ),
        )
    return option_block(func, "openai", options, _build)


def _build(timeout_s: float, old_timeout: Optional[float], **values: Any) -> OpenAIOptions:
    """The options of one command line (``--timeout`` is the old spelling of ``--timeout-s``)."""
    return OpenAIOptions(timeout_s=alias(timeout_s, old_timeout, "--timeout", "--timeout-s"), **values)
