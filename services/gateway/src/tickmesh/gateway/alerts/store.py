"""Alerts and their firings in PostgreSQL; each user sees and changes only their own alerts."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from tickmesh.core.errors import FailedPrecondition, NotFound
from tickmesh.core.instruments import SEPARATOR, InstrumentId
from tickmesh.gateway.schemas import AlertEventOut, AlertIn, AlertOut

log = logging.getLogger(__name__)

_COLUMNS = (
    "id, user_id, exchange, symbol, condition, threshold, parameters, channel, target, active, "
    "cooldown, one_time, last_triggered, created_at"
)
_ALERT_COLUMNS = ", ".join(f"a.{column}" for column in _COLUMNS.split(", "))
# The roles that may own alerts (deps.TraderUser): a user demoted below them, or disabled,
# keeps their alert rows, but they neither fire nor deliver.
ALERT_OWNER_ROLES = ("trader", "admin")
_OWNER_MAY_FIRE = "NOT u.disabled AND u.role = ANY({roles}::text[])"  # roles: a parameter

EVENT_COLUMNS = "id, alert_id, bar_time, fired_at, value, message"


def event_from_row(row: asyncpg.Record) -> AlertEventOut:
    """An `AlertEventOut` of an `alert_events` row selected with EVENT_COLUMNS (and more)."""
    return AlertEventOut(**{name: row[name] for name in EVENT_COLUMNS.split(", ")})


def _parameters(alert: AlertIn) -> str:
    return json.dumps(
        {
            "timeframe": alert.timeframe,
            "direction": alert.direction,
            "lookback_bars": alert.lookback_bars,
        }
    )


def alert_from_row(row: asyncpg.Record) -> AlertOut:
    """The API form of an `alerts` row (its parameters spread into fields)."""
    parameters: Any = json.loads(row["parameters"])
    if not isinstance(parameters, dict):  # a row no API wrote: judge it with the defaults
        parameters = {}
    return AlertOut.model_construct(
        id=row["id"],
        user_id=row["user_id"],
        instrument=f"{row['exchange']}{SEPARATOR}{row['symbol']}",
        condition=row["condition"],
        threshold=row["threshold"],
        timeframe=parameters.get("timeframe", "1m"),
        direction=parameters.get("direction", "any"),
        lookback_bars=parameters.get("lookback_bars", 1),
        channel=row["channel"],
        target=row["target"],
        active=row["active"],
        cooldown=row["cooldown"],
        one_time=row["one_time"],
        last_triggered=row["last_triggered"],
        created_at=row["created_at"],
    )


def _readable(rows: list[asyncpg.Record]) -> list[AlertOut]:
    """The rows as alerts, leaving out (and logging) any that cannot be read."""
    alerts = []
    for row in rows:
        try:
            alerts.append(alert_from_row(row))
        except (ValueError, TypeError, KeyError) as error:  # a row no API wrote
            log.warning("alert %d unreadable, left out: %s", row["id"], error)
    return alerts


@dataclass(frozen=True, slots=True)
class RecordedFiring:
    """A firing this replica recorded (another replica recording it first yields none)."""

    event: AlertEventOut
    alert: AlertOut


class AlertLimitReached(FailedPrecondition):
    """The user has as many alerts as one may have."""


class AlertStore:
    """The `alerts` and `alert_events` tables.

    `max_per_user` bounds each user's alerts; `min_cooldown` is the least number of seconds
    between two firings of a webhook or e-mail alert, whatever cooldown its row holds.
    """

    def __init__(self, pool: asyncpg.Pool, max_per_user: int = 100, min_cooldown: int = 0) -> None:
        self._pool = pool
        self._max_per_user = max_per_user
        self._min_cooldown = min_cooldown

    async def create(self, user_id: int, alert: AlertIn) -> AlertOut:
        """Store a new alert of `user_id`; AlertLimitReached when they have the most allowed."""
        instrument = InstrumentId.parse(alert.instrument)
        async with self._pool.acquire() as conn, conn.transaction():
            # The user's row lock orders concurrent creations, so the count below is exact.
            await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id)
            count = await conn.fetchval("SELECT count(*) FROM alerts WHERE user_id = $1", user_id)
            if count >= self._max_per_user:
                raise AlertLimitReached(
                    f"at most {self._max_per_user} alerts per user: delete one to add another"
                )
            row = await conn.fetchrow(
                "INSERT INTO alerts (user_id, exchange, symbol, condition, threshold, parameters, "
                "channel, target, active, cooldown, one_time) "
                "VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9, $10, $11) "
                f"RETURNING {_COLUMNS}",
                user_id,
                instrument.venue,
                instrument.symbol,
                alert.condition,
                alert.threshold,
                _parameters(alert),
                alert.channel,
                alert.target,
                alert.active,
                alert.cooldown,
                alert.one_time,
            )
        assert row is not None  # INSERT … RETURNING always returns the row
        return alert_from_row(row)

    async def list_for(self, user_id: int, limit: int, offset: int) -> list[AlertOut]:
        """The user's alerts, newest first."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM alerts WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
            user_id,
            limit,
            offset,
        )
        return [alert_from_row(row) for row in rows]

    async def get(self, user_id: int, alert_id: int) -> AlertOut:
        """One of the user's alerts; NotFound for another user's (no existence leak)."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM alerts WHERE id = $1 AND user_id = $2", alert_id, user_id
        )
        if row is None:
            raise NotFound(f"alert {alert_id} not found")
        return alert_from_row(row)

    async def replace(self, user_id: int, alert_id: int, alert: AlertIn) -> AlertOut:
        """Replace one of the user's alerts."""
        instrument = InstrumentId.parse(alert.instrument)
        row = await self._pool.fetchrow(
            "UPDATE alerts SET exchange = $3, symbol = $4, condition = $5, threshold = $6, "
            "parameters = $7::jsonb, channel = $8, target = $9, active = $10, cooldown = $11, "
            f"one_time = $12 WHERE id = $1 AND user_id = $2 RETURNING {_COLUMNS}",
            alert_id,
            user_id,
            instrument.venue,
            instrument.symbol,
            alert.condition,
            alert.threshold,
            _parameters(alert),
            alert.channel,
            alert.target,
            alert.active,
            alert.cooldown,
            alert.one_time,
        )
        if row is None:
            raise NotFound(f"alert {alert_id} not found")
        return alert_from_row(row)

    async def delete(self, user_id: int, alert_id: int) -> None:
        """Delete one of the user's alerts (its events go with it)."""
        status = await self._pool.execute(
            "DELETE FROM alerts WHERE id = $1 AND user_id = $2", alert_id, user_id
        )
        if status == "DELETE 0":
            raise NotFound(f"alert {alert_id} not found")

    async def events(self, user_id: int, alert_id: int, limit: int) -> list[AlertEventOut]:
        """The alert's firings, newest first."""
        await self.get(user_id, alert_id)
        rows = await self._pool.fetch(
            f"SELECT {EVENT_COLUMNS} FROM alert_events "
            "WHERE alert_id = $1 ORDER BY bar_time DESC LIMIT $2",
            alert_id,
            limit,
        )
        return [event_from_row(row) for row in rows]

    async def active(self) -> list[AlertOut]:
        """Every active alert whose owner may have alerts (enabled, trader or admin)."""
        rows = await self._pool.fetch(
            f"SELECT {_ALERT_COLUMNS} FROM alerts a JOIN users u ON u.id = a.user_id "
            f"WHERE a.active AND {_OWNER_MAY_FIRE.format(roles='$1')}",
            list(ALERT_OWNER_ROLES),
        )
        return _readable(rows)

    async def by_ids(self, alert_ids: list[int]) -> dict[int, AlertOut]:
        """The alerts of these ids, active or not, by id (deleted and unreadable ones absent)."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM alerts WHERE id = ANY($1::int[])", alert_ids
        )
        return {alert.id: alert for alert in _readable(rows)}

    async def record_firing(
        self, alert_id: int, bar_time: datetime, value: float, message: str
    ) -> RecordedFiring | None:
        """Record a firing once per (alert, bar) across replicas; None when already recorded,
        in cooldown, or no longer active.

        The cooldown and one-shot checks happen in the same statement as the insert, under
        the alert's row lock, so two replicas can never both fire the same alert.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            alert_row = await conn.fetchrow(
                f"SELECT {_ALERT_COLUMNS} FROM alerts a JOIN users u ON u.id = a.user_id "
                f"WHERE a.id = $1 AND a.active AND {_OWNER_MAY_FIRE.format(roles='$2')} "
                "FOR UPDATE OF a",
                alert_id,
                list(ALERT_OWNER_ROLES),
            )
            if alert_row is None:
                return None
            cooldown = alert_row["cooldown"]
            if alert_row["channel"] != "websocket":
                cooldown = max(cooldown, self._min_cooldown)
            last = alert_row["last_triggered"]
            if last is not None and (bar_time - last).total_seconds() < cooldown:
                return None
            # Webhook and e-mail firings are sent from the table (AlertDeliveries).
            delivery = "none" if alert_row["channel"] == "websocket" else "pending"
            event = await conn.fetchrow(
                "INSERT INTO alert_events (alert_id, bar_time, value, message, delivery, "
                "next_attempt_at) VALUES ($1, $2, $3, $4, $5, now()) "
                "ON CONFLICT (alert_id, bar_time) DO NOTHING "
                f"RETURNING {EVENT_COLUMNS}",
                alert_id,
                bar_time,
                value,
                message,
                delivery,
            )
            if event is None:
                return None
            updated = await conn.fetchrow(
                "UPDATE alerts SET last_triggered = $2, active = active AND NOT one_time "
                f"WHERE id = $1 RETURNING {_COLUMNS}",
                alert_id,
                bar_time,
            )
            assert updated is not None  # the row is locked by this transaction
        return RecordedFiring(event_from_row(event), alert_from_row(updated))
