"""The function's single entrypoint: `functions-framework --source handler.py --target handle`."""

import os
import sys

import flask
import functions_framework
from werkzeug.exceptions import NotFound as RoutingNotFound

from function import logs
from function.app import create_app
from function.config import load_settings
from function.errors import ConfigError

try:
    app = create_app(settings := load_settings())
    logs.configure(settings.log_level, settings.log_format)
except ConfigError as exc:  # fail the start with the variable named, not a traceback
    sys.exit(f"configuration error: {exc}")
os.register_at_fork(after_in_child=app.start)  # load the engine in each forked worker (runtime.py)


@functions_framework.http
def handle(request: flask.Request) -> flask.Response:
    return app.dispatch(request)


@functions_framework.errorhandler(RoutingNotFound)  # its own HTML 404s (/robots.txt, CR/LF): ours too
def _unrouted(exc: RoutingNotFound) -> flask.Response:
    return app.dispatch(flask.request)
