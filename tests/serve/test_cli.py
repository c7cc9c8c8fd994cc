"""``clinrl serve`` wiring: options reach the app, the token comes from the environment, loopback without a
token warns, and the app it would run serves for real (uvicorn.run is replaced by a loopback thread)."""

from __future__ import annotations

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
        ok = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer cli-token"}, timeout=30)
        assert ok.status_code == 200 and ok.json()["model"] == "tiny-cli"
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).status_code == 401
        big = httpx.post(f"{url}/v1/chat/completions", content=b"x" * 6000, headers={"Authorization": "Bearer cli-token"})
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
