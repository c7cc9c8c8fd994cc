"""The engine tier's marker (registered here too, so that this folder runs under any pytest configuration)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "engine: needs the engine venv (deepspeed, vllm); run by make test-engines")
