"""Offline by default: where a model name may come from, and when the Hugging Face Hub may be asked.

clinrl makes no network calls of its own, and a mistyped local path (``runs/nope``) looks exactly like a
hub repository id (``owner/name``); left to ``from_pretrained`` it would send that path to the Hub and
retry for most of a minute. So, unless the user opts in with ``CLINRL_ALLOW_HUB=1``:

- importing :mod:`clinrl` sets ``HF_HUB_OFFLINE=1`` for the process (unless the user set it), which also
  covers models that TRL, vLLM or transformers load on their own from a name we pass on;
- :func:`resolve_model` accepts an existing local folder, or a hub name already in the local cache, and
  otherwise fails at once with one line that says how to opt in; no request is made;
- :func:`local_files_only` is passed to our own ``from_pretrained`` calls, so they stay offline even when
  ``huggingface_hub`` was imported (and read its settings) before clinrl.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from clinrl.errors import ClinrlError

__all__ = ["ALLOW_HUB_ENV", "hub_allowed", "local_files_only", "offline_by_default", "resolve_model"]

ALLOW_HUB_ENV = "CLINRL_ALLOW_HUB"


def hub_allowed() -> bool:
    """Whether the user opted in to Hugging Face Hub downloads (``CLINRL_ALLOW_HUB=1``/``true``/``yes``)."""
    return os.environ.get(ALLOW_HUB_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def local_files_only() -> bool:
    """The ``local_files_only`` argument for ``from_pretrained``: True unless the hub is allowed."""
    return not hub_allowed()


def offline_by_default() -> None:
    """Set ``HF_HUB_OFFLINE=1`` for this process unless the hub is allowed or the user set it already.

    ``huggingface_hub`` reads the variable once, at import; if it was imported before clinrl, its
    module-level flag is set as well so that the same rule holds."""
    if hub_allowed() or "HF_HUB_OFFLINE" in os.environ:
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def _in_hub_cache(name: str) -> bool:
    """Whether ``name`` is a hub repository id whose ``config.json`` is in the local cache (no request)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # an invalid repo id (HFValidationError) or no huggingface_hub: not cached
        return False


def resolve_model(name: str | Path) -> str:
    """The model source to pass to ``from_pretrained``: an existing local folder, a cached hub name, or —
    only with ``CLINRL_ALLOW_HUB=1`` — any hub name. Anything else is a one-line :class:`ClinrlError`,
    raised before any network request (the path never leaves the machine)."""
    text = str(name)
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ClinrlError(f"{text}: not a model folder (it is a file)")
    if hub_allowed() or _in_hub_cache(text):
        return text
    raise ClinrlError(
        f"model folder not found: {text} (clinrl works offline; to download a Hugging Face Hub model, "
        f"set {ALLOW_HUB_ENV}=1)"
    )
