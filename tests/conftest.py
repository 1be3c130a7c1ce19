from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server import FunctionServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionServer]:
    """One real function process with the rapidocr engine and a local store, ready."""
    tmp = tmp_path_factory.mktemp("function")
    srv = FunctionServer({"OCR_ENGINE": "rapidocr", "OCR_STORE": f"file://{tmp}/output"}, tmp / "server.log")
    srv.start()
    try:
        srv.ready_seconds = srv.wait_ready()  # type: ignore[attr-defined]
        yield srv
    finally:
        srv.stop()
