"""Where a firing is said: a Slack-compatible webhook or an e-mail over SMTP, one attempt at a time.

Each attempt ends by the settings' deadline, whatever the target does.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import smtplib
import ssl
from email.message import EmailMessage

import httpx

from tickmesh.gateway.alerts.targets import email_address
from tickmesh.gateway.alerts.webhooks import (
    Resolver,
    WebhookRefused,
    WebhookSender,
    system_resolver,
)
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
        self,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._deadline = settings.gateway_webhook_timeout_seconds
        self._webhooks = WebhookSender(
            resolver, settings.gateway_webhook_allow_private, self._deadline, verify
        )

    async def close(self) -> None:
        """Close the webhook client."""
        await self._webhooks.close()

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
        # Slack's incoming-webhook shape: {"text": ...}; extra fields are ignored by Slack.
        payload = {
            "text": f":rotating_light: {event.message}",
            "alert_id": event.alert_id,
            "bar_time": event.bar_time.isoformat(),
            "value": event.value,
        }
        try:
            status = await self._webhooks.post(url, payload)
        except WebhookRefused as refusal:
            log.warning("webhook of alert %d refused: %s", event.alert_id, refusal)
            return Outcome.REFUSED
        except TimeoutError:
            log.warning(
                "webhook of alert %d: no answer within %.1f s", event.alert_id, self._deadline
            )
            return Outcome.RETRY
        except httpx.HTTPError as error:
            log.warning("webhook of alert %d failed: %s", event.alert_id, type(error).__name__)
            return Outcome.RETRY
        if status < 400:
            return Outcome.DELIVERED
        log.warning("webhook of alert %d failed: HTTP %d", event.alert_id, status)
        if status == 429 or status >= 500:
            return Outcome.RETRY
        return Outcome.REFUSED

    async def _email(self, alert: AlertOut, event: AlertEventOut) -> Outcome:
        try:
            # Rows stored by older versions were checked less strictly: judge them again.
            recipient = email_address(alert.target or "")
        except ValueError as error:
            log.warning("e-mail of alert %d refused: %s", event.alert_id, error)
            return Outcome.REFUSED
        message = EmailMessage()
        message["From"] = self._settings.gateway_smtp_sender
        message["To"] = recipient
        message["Subject"] = f"tickmesh alert: {alert.instrument} {alert.condition}"
        message.set_content(f"{event.message}\nbar: {event.bar_time.isoformat()}\n")
        try:
            # The thread cannot be cancelled; its own socket timeouts end it later.
            async with asyncio.timeout(self._deadline):
                await asyncio.to_thread(self._send_mail, message)
        except TimeoutError:
            log.warning(
                "e-mail of alert %d: no answer within %.1f s", event.alert_id, self._deadline
            )
            return Outcome.RETRY
        except smtplib.SMTPRecipientsRefused as error:
            log.warning("e-mail of alert %d refused: %s", event.alert_id, error)
            return Outcome.REFUSED
        except (OSError, smtplib.SMTPException) as error:
            log.warning("e-mail of alert %d failed: %s", event.alert_id, error)
            return Outcome.RETRY
        return Outcome.DELIVERED

    def _send_mail(self, message: EmailMessage) -> None:
        with smtplib.SMTP(
            self._settings.gateway_smtp_host,
            self._settings.gateway_smtp_port,
            timeout=self._deadline,
        ) as smtp:
            smtp.send_message(message)
