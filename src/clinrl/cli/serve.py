"""``clinrl serve``: run the HTTP server (:mod:`clinrl.serve`) with uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from clinrl.cli._common import alias, hidden_alias

__all__ = ["serve_command"]


def serve_command(
    model: Path = typer.Option(..., "--model", help="Causal LM folder (e.g. a trained DRG model)."),
    prm: Optional[Path] = typer.Option(
        None, "--prm", help="PRM folder (clinrl_prm.json inside) or judge folder (prm judge-init) for /v1/prm/score."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; other than loopback needs a token."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    token_env: str = typer.Option(
        "CLINRL_SERVE_TOKEN", "--token-env", help="Environment variable holding the bearer token."
    ),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", min=1, help="Largest request body (413 above)."),
    max_queue: int = typer.Option(16, "--max-queue", min=0, help="Requests that may wait for the model (429 beyond)."),
    timeout_s: float = typer.Option(300.0, "--timeout-s", min=0.001, help="Per-request limit, waiting included (504)."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Model calls run at the same time."),
    max_new_tokens: int = typer.Option(2048, "--max-new-tokens", min=1, help="Largest max_tokens a request may ask."),
    max_prompt_tokens: int = typer.Option(
        8192, "--max-prompt-tokens", min=1, help="Longest chat/completion prompt (413 above)."
    ),
    drg_max_prompt_tokens: int = typer.Option(
        4096, "--drg-max-prompt-tokens", min=1, help="DRG prompt budget (course cut to fit)."
    ),
    max_stop_strings: int = typer.Option(
        8, "--max-stop-strings", min=0, help="Most stop strings per request (422 above)."
    ),
    max_stop_chars: int = typer.Option(256, "--max-stop-chars", min=1, help="Longest stop string (422 above)."),
    model_name: Optional[str] = typer.Option(
        None, "--model-name", help="Model id in responses (default: folder name)."
    ),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda when available)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch (default: torch's)."),
    log_text: bool = typer.Option(False, "--log-text", help="Log prompts and outputs (patient data!)."),
    old_max_concurrency: Optional[int] = hidden_alias("--max-concurrency", "--concurrency", min=1),
) -> None:
    """Serve a model: OpenAI-compatible chat/completions, DRG coding, PRM scoring (docs/serving.md)."""
    import uvicorn

    from clinrl.serve import ServeSettings, check_bind, create_app
    from clinrl.serve.settings import read_token, uvicorn_options

    settings = ServeSettings(
        model=str(model), prm=str(prm) if prm else None, host=host, port=port, token_env=token_env,
        max_body_bytes=max_body_bytes, max_queue=max_queue, timeout_s=timeout_s,
        max_concurrency=alias(concurrency, old_max_concurrency, "--max-concurrency", "--concurrency"),
        max_new_tokens=max_new_tokens, max_prompt_tokens=max_prompt_tokens, drg_max_prompt_tokens=drg_max_prompt_tokens,
        max_stop_strings=max_stop_strings, max_stop_chars=max_stop_chars, model_name=model_name, device=device,
        log_text=log_text,
    )  # fmt: skip
    token = read_token(token_env)
    warning = check_bind(host, token, token_env)  # before loading anything
    if warning:
        typer.secho(f"warning: {warning}", err=True, fg="yellow")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )  # no-op after --log-level
    app = create_app(settings, token=token)
    typer.echo(f"serving {settings.served_name} on http://{host}:{port} (docs/serving.md)", err=True)
    uvicorn.run(app, **uvicorn_options(host, port))
