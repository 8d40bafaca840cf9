"""`/api/v1/alerts`: a trader's own alert rules and their firing history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from tickmesh.gateway.alerts.policy import check_alert_policy
from tickmesh.gateway.deps import ServicesDep, TraderUser, rate_limited
from tickmesh.gateway.problems import PROBLEM_RESPONSES
from tickmesh.gateway.schemas import AlertEventOut, AlertIn, AlertOut

router = APIRouter(
    prefix="/api/v1/alerts",
    tags=["alerts"],
    dependencies=[Depends(rate_limited("api"))],
    responses=PROBLEM_RESPONSES
    | {
        404: PROBLEM_RESPONSES[400] | {"description": "Not found"},
        409: PROBLEM_RESPONSES[400] | {"description": "Too many alerts"},
    },
)

AlertId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_alert(body: AlertIn, user: TraderUser, services: ServicesDep) -> AlertOut:
    """Create an alert rule (traders and admins); 409 when the caller has the most allowed."""
    check_alert_policy(body, services.settings)
    return await services.alerts.create(user.id, body)


@router.get("")
async def list_alerts(
    user: TraderUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AlertOut]:
    """The caller's alerts, newest first."""
    return await services.alerts.list_for(user.id, limit, offset)


@router.get("/{alert_id}")
async def get_alert(alert_id: AlertId, user: TraderUser, services: ServicesDep) -> AlertOut:
    """One of the caller's alerts."""
    return await services.alerts.get(user.id, alert_id)


@router.put("/{alert_id}")
async def replace_alert(
    alert_id: AlertId, body: AlertIn, user: TraderUser, services: ServicesDep
) -> AlertOut:
    """Replace one of the caller's alerts."""
    check_alert_policy(body, services.settings)
    return await services.alerts.replace(user.id, alert_id, body)


@router.delete("/{alert_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_alert(alert_id: AlertId, user: TraderUser, services: ServicesDep) -> None:
    """Delete one of the caller's alerts and its history."""
    await services.alerts.delete(user.id, alert_id)


@router.get("/{alert_id}/events")
async def alert_events(
    alert_id: AlertId,
    user: TraderUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertEventOut]:
    """The alert's firings, newest first."""
    return await services.alerts.events(user.id, alert_id, limit)
