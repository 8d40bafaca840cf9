"""An HTTP session for yfinance that can send Yahoo's requests to another server.

yfinance has no base-URL setting and copies its URL constants at import, so a session
whose ``request`` rewrites ``https://*.yahoo.com/...`` is the one seam: the demo and the
tests point it at a local server answering ``/``, ``/v1/test/getcrumb`` and
``/v8/finance/chart/SYM`` as Yahoo does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from curl_cffi import requests as curl_requests


def rewrite_yahoo_url(url: str, base_url: str) -> str:
    """`url` with a *.yahoo.com scheme and host replaced by `base_url` (others unchanged)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host != "yahoo.com" and not host.endswith(".yahoo.com"):
        return url
    query = f"?{parts.query}" if parts.query else ""
    return base_url.rstrip("/") + (parts.path or "/") + query


class RedirectingSession(curl_requests.Session):  # type: ignore[type-arg]
    """A curl_cffi session that sends Yahoo's URLs to `base_url`."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_url = base_url

    def request(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:
        """Send the request, to `base_url` when it was meant for Yahoo."""
        return super().request(method, rewrite_yahoo_url(url, self.target_url), *args, **kwargs)
