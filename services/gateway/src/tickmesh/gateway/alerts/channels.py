"""Where a firing is said: a Slack-compatible webhook or an e-mail over SMTP, one attempt at a time."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import smtplib
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx

from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.schemas import AlertEventOut, AlertOut
from tickmesh.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    """What one delivery attempt came to."""

    DELIVERED = "delivered"
    RETRY = "retry"  # the target was down or busy: try again later
    REFUSED = "refused"  # no later attempt can succeed (a 4xx, a private address)


class AlertChannels:
    """Make one delivery attempt of a firing; outcomes are counted, failures logged."""

    def __init__(
        self, settings: GatewaySettings, metrics: GatewayMetrics, http: httpx.AsyncClient
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._http = http

    async def attempt(self, alert: AlertOut, event: AlertEventOut) -> Outcome:
        """Send the firing once on the alert's channel (webhook or e-mail)."""
        if alert.channel == "webhook" and alert.target is not None:
            outcome = await self._webhook(alert.target, event)
        elif alert.channel == "email" and alert.target is not None:
            outcome = await self._email(alert, event)
        else:
            outcome = Outcome.REFUSED  # WebSocket firings go to connected clients, not here
        self._metrics.notifications.labels(channel=alert.channel, outcome=outcome.value).inc()
        return outcome

    async def _webhook(self, url: str, event: AlertEventOut) -> Outcome:
        if not self._settings.gateway_webhook_allow_private:
            refusal = await internal_target(url)
            if refusal is not None:
                log.warning("webhook of alert %d refused: %s", event.alert_id, refusal)
                return Outcome.REFUSED
        # Slack's incoming-webhook shape: {"text": ...}; extra fields are ignored by Slack.
        payload = {
            "text": f":rotating_light: {event.message}",
            "alert_id": event.alert_id,
            "bar_time": event.bar_time.isoformat(),
            "value": event.value,
        }
        try:
            response = await self._http.post(url, json=payload, timeout=5.0)
        except httpx.HTTPError as error:
            log.warning("webhook of alert %d failed: %s", event.alert_id, type(error).__name__)
            return Outcome.RETRY
        if response.status_code < 400:
            return Outcome.DELIVERED
        log.warning("webhook of alert %d failed: HTTP %d", event.alert_id, response.status_code)
        if response.status_code == 429 or response.status_code >= 500:
            return Outcome.RETRY
        return Outcome.REFUSED

    async def _email(self, alert: AlertOut, event: AlertEventOut) -> Outcome:
        message = EmailMessage()
        message["From"] = self._settings.gateway_smtp_sender
        message["To"] = alert.target
        message["Subject"] = f"tickmesh alert: {alert.instrument} {alert.condition}"
        message.set_content(f"{event.message}\nbar: {event.bar_time.isoformat()}\n")
        try:
            await asyncio.to_thread(self._send_mail, message)
        except smtplib.SMTPRecipientsRefused as error:
            log.warning("e-mail of alert %d refused: %s", event.alert_id, error)
            return Outcome.REFUSED
        except (OSError, smtplib.SMTPException) as error:
            log.warning("e-mail of alert %d failed: %s", event.alert_id, error)
            return Outcome.RETRY
        return Outcome.DELIVERED

    def _send_mail(self, message: EmailMessage) -> None:
        with smtplib.SMTP(
            self._settings.gateway_smtp_host, self._settings.gateway_smtp_port, timeout=10
        ) as smtp:
            smtp.send_message(message)


async def internal_target(url: str) -> str | None:
    """Why `url` must not be called (it reaches this host or a private network), or None.

    Any trader can name a webhook URL, so without this the gateway would post to services
    that only its own network can reach.
    """
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        return "no host in the URL"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port)
    except OSError as error:
        return f"{host} does not resolve ({error})"
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            return f"{host} resolves to the non-public address {address}"
    return None
