"""``clinrl serve`` wiring: options reach the app, the token comes from the environment, loopback without a
token warns, and the app it would run serves for real (uvicorn.run is replaced by a loopback thread)."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
import torch

from clinrl.cli import main
from tests.helpers.models import build_smallest_lm
from tests.helpers.servers import serve_app


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    torch.set_num_threads(1)
    return build_smallest_lm(tmp_path_factory.mktemp("lm"))


@pytest.fixture
def captured(monkeypatch):
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    return calls


def test_serve_command_builds_a_guarded_app(lm, captured, monkeypatch, capsys):
    monkeypatch.setenv("MY_SERVE_TOKEN", "cli-token")
    main(["serve", "--model", str(lm), "--port", "8123", "--token-env", "MY_SERVE_TOKEN", "--max-queue", "3",
          "--max-body-bytes", "5000", "--device", "cpu", "--model-name", "tiny-cli"])  # fmt: skip
    [call] = captured
    assert call["host"] == "127.0.0.1" and call["port"] == 8123
    assert "warning" not in capsys.readouterr().err
    body = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    with serve_app(call["app"]) as url:
        health = httpx.get(f"{url}/healthz").json()
        assert health["model"] == "tiny-cli" and health["queue"]["max_queue"] == 3 and health["prm"] is False
        ok = httpx.post(
            f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer cli-token"}, timeout=30
        )
        assert ok.status_code == 200 and ok.json()["model"] == "tiny-cli"
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 401
        big = httpx.post(
            f"{url}/v1/chat/completions", content=b"x" * 6000, headers={"Authorization": "Bearer cli-token"}
        )
        assert big.status_code == 413


def test_loopback_without_token_warns(lm, captured, monkeypatch, capsys):
    monkeypatch.delenv("CLINRL_SERVE_TOKEN", raising=False)
    main(["serve", "--model", str(lm), "--device", "cpu"])
    assert "warning: no token in $CLINRL_SERVE_TOKEN" in capsys.readouterr().err and len(captured) == 1


def test_public_address_without_token_exits_2_before_loading(tmp_path, captured, monkeypatch, capsys):
    monkeypatch.delenv("CLINRL_SERVE_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--model", str(tmp_path / "missing"), "--host", "0.0.0.0"])
    assert exit_.value.code == 2 and "refusing to listen on 0.0.0.0" in capsys.readouterr().err and not captured


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def test_a_token_in_the_query_string_is_never_logged(lm, captured, monkeypatch, capfd):
    """Issue 16 item 8: uvicorn's access log printed the URL with its query, token included."""
    import uvicorn

    token = "query-string-secret-0123"
    monkeypatch.setenv("CLINRL_SERVE_TOKEN", token)
    main(["serve", "--model", str(lm), "--device", "cpu", "--port", "8124"])
    [call] = captured
    app, options = call.pop("app"), {**call, "port": 0}
    server = uvicorn.Server(uvicorn.Config(app, **options))  # exactly what `clinrl serve` runs, on a free port
    records = _Records()
    # uvicorn writes its own lines to stdout/stderr (capfd); a handler on uvicorn.access would switch it on
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "clinrl")]
    for logger in loggers:
        logger.addHandler(records)
    monkeypatch.setattr(loggers[-1], "level", logging.INFO)  # as `clinrl serve` sets it (basicConfig), not pytest
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.01)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/v1/models?access_token={token}", headers=auth).status_code == 200
        assert httpx.get(f"{url}/v1/models?api_key={token}").status_code == 401
        assert httpx.get(f"{url}/healthz?token={token}").status_code == 200
    finally:
        server.should_exit = True
        thread.join(20)
        for logger in loggers:
            logger.removeHandler(records)
    logged = "\n".join([*records.lines, *capfd.readouterr()])
    assert "GET /v1/models -> 200" in logged and "GET /v1/models -> 401" in logged  # the request log is there
    assert token not in logged


@pytest.mark.parametrize("token", ["tök\u00e9n-secret", "two words", "tab\tsecret", "bell\x07secret"])
def test_a_token_no_client_can_send_is_refused_at_start_up(tmp_path, captured, monkeypatch, capsys, token):
    """Issue 16 item 8: a UTF-8 token could never match a request, and start-up did not say so."""
    monkeypatch.setenv("CLINRL_SERVE_TOKEN", token)
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--model", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and not captured and len(err.splitlines()) == 1
    assert "$CLINRL_SERVE_TOKEN" in err and "printable ASCII" in err and token not in err


def test_create_app_refuses_such_a_token_too():
    from clinrl.errors import ClinrlError
    from clinrl.serve import create_app

    with pytest.raises(ClinrlError, match="printable ASCII"):
        create_app(token="tök\u00e9n")
