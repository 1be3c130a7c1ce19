"""Optional bearer-token auth (`OCR_API_KEYS`): health probes and the contract stay open, so
kubelet, Knative and load balancers need no key; `/metrics` is open unless `OCR_METRICS_AUTH`."""

from __future__ import annotations

import hmac

from function import trypage
from function.config import Settings
from function.errors import Unauthorized

OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/openapi.json"})


def check(settings: Settings, method: str, path: str, authorization: str | None, api_key: str | None) -> None:
    """Raise 401 unless keys are off, the route is open, or the request carries a configured key
    (`Authorization: Bearer <key>`, or `X-API-Key: <key>` as the older service's clients send)."""
    if not settings.api_keys or _is_open(settings, method, path):
        return
    scheme, _, token = (authorization or "").partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else (api_key or "").strip()
    if not presented:
        raise Unauthorized("this function needs an API key: send 'Authorization: Bearer <key>'")
    if not _known(presented, settings.api_keys):
        raise Unauthorized("the API key is not valid")


def _is_open(settings: Settings, method: str, path: str) -> bool:
    if path in OPEN_PATHS or (path == "/metrics" and not settings.metrics_auth):
        return True
    # The try-it page and its scripts are static files; what the page posts is checked like any request.
    return method in ("GET", "HEAD") and path in trypage.FILES and settings.try_page


def _known(presented: str, keys: tuple[str, ...]) -> bool:
    """Constant time in the key's content: every configured key is compared, none short-circuits."""
    given = presented.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found
