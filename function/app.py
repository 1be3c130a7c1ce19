"""The one place the function is wired: settings in, an app that answers HTTP requests out.

`create_app(settings)` builds what `handler.py` serves; tests pass their own `engine` (a fake where
recognition is not what they test) or `store`, and call the app in process (`App.wsgi`).
"""

from __future__ import annotations

from dataclasses import dataclass

import flask

from function.admission import Admission
from function.config import Settings
from function.dispatch import InProcess, ToBroker
from function.engines.base import Engine
from function.http import HttpTransport
from function.intake import Intake
from function.jobs import Jobs
from function.lifecycle import Recycler
from function.ops import Ops
from function.responses import success_body
from function.runtime import Runtime
from function.service import Service
from function.store import ResultStore


@dataclass(frozen=True)
class App:
    runtime: Runtime
    service: Service
    transport: HttpTransport

    def dispatch(self, request: flask.Request) -> flask.Response:
        return self.transport.dispatch(request)

    def start(self) -> None:
        """Begin loading the engine in this process (each forked worker calls it; see runtime.py)."""
        self.runtime.start()

    def wsgi(self) -> flask.Flask:
        """A WSGI app that sends every request to `dispatch`, as functions-framework does."""
        # No static route: Flask's default would serve function/static/ at /static/<file>, shadowing
        # the try-it page's own routes (function/trypage.py), as functions-framework's app does not.
        wsgi = flask.Flask(__name__, static_folder=None)
        methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

        @wsgi.route("/", defaults={"path": ""}, methods=methods)
        @wsgi.route("/<path:path>", methods=methods)
        def _all(path: str) -> flask.Response:
            return self.dispatch(flask.request)

        return wsgi


def create_app(settings: Settings, *, engine: Engine | None = None, store: ResultStore | None = None) -> App:
    """The function for `settings`; `engine` and `store` replace the ones the settings name."""
    runtime = Runtime(settings, engine, store)
    admission = Admission(settings.concurrency, settings.queue_size, settings.queue_wait_sec)
    service = Service(settings, runtime.wait_engine, runtime.store, admission.slot)
    intake = Intake(settings, runtime.store.s3)
    jobs = Jobs(service, runtime.store, success_body)
    jobs.dispatch = ToBroker(settings) if settings.k_sink else InProcess(settings, jobs)
    transport = HttpTransport(settings, intake, jobs, Ops(runtime, runtime.store), Recycler(settings))
    return App(runtime, service, transport)
