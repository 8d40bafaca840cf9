"""Keep credentials passed in a URL query (`/ws/...?token=`) out of logs and traces.

Browsers cannot set headers on a WebSocket handshake, so clients may send the access token
as `?token=`. uvicorn writes the path with its query into the access log (and the WebSocket
"accepted" line), and OpenTelemetry's ASGI instrumentation into `http.url`, `http.target` and
`url.query`; OTel redacts only a fixed list of cloud signature parameters. Both are hooks the
libraries offer: a logging filter on uvicorn's loggers and the instrumentation's
`server_request_hook`, which runs right after the span's attributes are set.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from opentelemetry.trace import Span

# Query parameters whose values are credentials.
SECRET_PARAMETERS = ("token", "access_token")
LOG_MARK = "[REDACTED]"
TRACE_MARK = "REDACTED"  # what OpenTelemetry's own redaction writes
_SECRET = re.compile(
    r"(?P<key>(?:^|(?<=[?&;]))(?:{})=)[^&;#\s\"']*".format("|".join(SECRET_PARAMETERS)),
    re.IGNORECASE,
)
# Attributes of a server span that may carry the query (old and new semantic conventions).
_URL_ATTRIBUTES = ("http.url", "http.target", "url.full", "url.query")
UVICORN_LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_query(text: str, mark: str = LOG_MARK) -> str:
    """`text` (a URL, a path with query or a bare query) with secret parameter values replaced."""
    return _SECRET.sub(lambda match: match.group("key") + mark, text)


class RedactQueryTokens(logging.Filter):
    """Rewrites a record whose message carries a secret query parameter; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; always keep the record."""
        message = record.getMessage()
        redacted = redact_query(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def install_log_redaction() -> None:
    """Attach the filter to uvicorn's loggers (process-wide; called once by the gateway's main)."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueryTokens) for f in logger.filters):
            logger.addFilter(RedactQueryTokens())


def redact_span_urls(span: Span, scope: dict[str, Any]) -> None:
    """`server_request_hook` for the ASGI instrumentation: rewrite URL attributes carrying a secret."""
    if not span.is_recording() or not scope.get("query_string"):
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            redacted = redact_query(value, TRACE_MARK)
            if redacted != value:
                span.set_attribute(key, redacted)
