"""A WSGI app served by werkzeug's threaded server on a free port of 127.0.0.1, in a thread of the
test process: the test broker, the queue-worker stand-in and the tiny subscribers of their tests."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Self

from werkzeug.serving import make_server
from werkzeug.wrappers import Response

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


class Running:
    """`with` starts it (`start` returns it) and stops it (`stop`)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalServer(Running):
    def __init__(self, app: WSGIApplication) -> None:
        self._httpd = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=self.url, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()


def json_response(status: int, body: dict[str, str]) -> Response:
    return Response(json.dumps(body), status, mimetype="application/json")
