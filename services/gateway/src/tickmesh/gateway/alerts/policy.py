"""The gateway's own rules for an alert a client sends, on top of its syntax (schemas.AlertIn).

They depend on settings, which a pydantic model parsing a request body cannot see, so they
run in the route and refuse with the same 422 problem a schema error gets, naming the field.
"""

from __future__ import annotations

import httpx
from fastapi.exceptions import RequestValidationError

from tickmesh.gateway.alerts.addresses import parse_address, refusal
from tickmesh.gateway.schemas import AlertIn
from tickmesh.gateway.settings import GatewaySettings


def check_alert_policy(alert: AlertIn, settings: GatewaySettings) -> None:
    """RequestValidationError when a webhook or e-mail alert cools down for less than the
    minimum, or a webhook names an internal IP address outright.

    A webhook naming a host is checked again at every attempt (its address can change);
    this only spares the trader an alert that could never be sent.
    """
    errors = []
    minimum = settings.gateway_alert_min_cooldown_seconds
    if alert.channel != "websocket" and alert.cooldown < minimum:
        errors.append(
            _error("cooldown", f"webhook and e-mail alerts cool down for at least {minimum} s")
        )
    if alert.channel == "webhook" and alert.target and not settings.gateway_webhook_allow_private:
        address = parse_address(httpx.URL(alert.target).host)  # the sender's parser
        reason = None if address is None else refusal(address)
        if reason is not None:
            errors.append(_error("target", f"webhooks go to public addresses only: {reason}"))
    if errors:
        raise RequestValidationError(errors)


def _error(field: str, message: str) -> dict[str, object]:
    return {"loc": ("body", field), "msg": message, "type": "value_error"}
