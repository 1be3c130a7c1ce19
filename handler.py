"""The function's single entrypoint: `functions-framework --source handler.py --target handle`."""

from __future__ import annotations

import os
import sys

import flask
import functions_framework
from werkzeug.exceptions import NotFound as RoutingNotFound

from function import logs
from function.config import load_settings
from function.errors import ConfigError
from function.http import HttpApp
from function.runtime import Runtime

try:
    _settings = load_settings()
    logs.configure(_settings.log_level, _settings.log_format)
    app = HttpApp(Runtime(_settings))
except ConfigError as exc:  # fail the start with the variable named, not a traceback
    sys.exit(f"configuration error: {exc}")
# Load the engine in each forked worker as soon as it exists (see function/runtime.py).
os.register_at_fork(after_in_child=app.runtime.start)


@functions_framework.http
def handle(request: flask.Request) -> flask.Response:
    return app.dispatch(request)


# functions-framework routes a few paths (/robots.txt, /favicon.ico, paths with CR/LF) to its own HTML
# 404; send them through the app too, so every answer is our JSON with a request id.
@functions_framework.errorhandler(RoutingNotFound)
def _unrouted(exc: RoutingNotFound) -> flask.Response:
    return app.dispatch(flask.request)
