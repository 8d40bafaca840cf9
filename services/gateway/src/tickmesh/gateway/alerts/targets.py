"""The syntax of alert targets: a webhook URL a sender can dial, an e-mail address SMTP takes.

These run when an alert is created or replaced. Rows stored by older versions are not
re-checked here; the delivery worker treats whatever it cannot send as that row's failure.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import email_validator
import httpx

from tickmesh.gateway.alerts.addresses import parse_address

# A DNS name after IDNA encoding: labels of 1-63 letters, digits, '-' (and '_', seen in real
# hostnames), 253 characters in all, an optional final dot.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}\.?$)(?:{_LABEL}\.)*{_LABEL}\.?$")


def webhook_url(value: str) -> str:
    """`value` when it is an http(s) URL with a valid host and port; ValueError saying why not."""
    if any(character.isspace() or not character.isprintable() for character in value):
        raise ValueError("a webhook URL has no spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port outside 0-65535
    except ValueError as error:
        raise ValueError(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("a webhook URL is http:// or https://")
    if not parts.hostname:
        raise ValueError("a webhook URL names a host")
    if port == 0:
        raise ValueError("a webhook URL's port is between 1 and 65535")
    try:
        url = httpx.URL(value)  # the parser the sender uses: IDNA names, bracketed IPv6
    except httpx.InvalidURL as error:
        raise ValueError(f"not a valid URL: {error}") from None
    host = url.raw_host.decode("ascii")
    if parse_address(host) is None and _HOST_NAME.match(host) is None:
        raise ValueError(f"{parts.hostname!r} is not a valid host name")
    return value


def email_address(value: str) -> str:
    """The address in its ASCII form (IDNA domain); ValueError with email-validator's reason."""
    try:
        checked = email_validator.validate_email(
            value,
            check_deliverability=False,  # no DNS at request time; SMTP says the rest
            allow_smtputf8=False,  # the SMTP relay need not speak SMTPUTF8
        )
    except email_validator.EmailNotValidError as error:
        raise ValueError(f"not a valid e-mail address: {error}") from None
    assert checked.ascii_email is not None  # always set when SMTPUTF8 is not allowed
    return checked.ascii_email
