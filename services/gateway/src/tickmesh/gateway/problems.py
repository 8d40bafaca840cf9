"""Every error as an RFC 9457 problem document (`application/problem+json`): never a bare 500."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tickmesh.core.errors import DomainError, ResourceExhausted, Unauthenticated

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tickmesh.dev/problems/"


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, in words a client can show."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class RateLimited(ResourceExhausted):
    """Too many requests; carries the headers that say when to come back."""

    def __init__(self, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(message)
        self.headers = dict(headers)


def problem_response(
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
) -> JSONResponse:
    """A problem+json response of `status` with `detail`."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = Problem(
        type=PROBLEM_TYPE_BASE + phrase.lower().replace(" ", "-").replace("'", ""),
        title=phrase,
        status=status,
        detail=detail,
        errors=list(errors) if errors is not None else None,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_MEDIA_TYPE,
    )


def _validation_message(error: Mapping[str, Any]) -> dict[str, Any]:
    location = ".".join(str(part) for part in error.get("loc", ()))
    return {"field": location, "message": str(error.get("msg", "invalid"))}


def install_problem_handlers(app: FastAPI) -> None:
    """Map domain errors, HTTP errors, validation errors and anything unexpected to problems."""

    async def on_domain_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DomainError)  # registered for DomainError only
        headers: dict[str, str] = {}
        if isinstance(error, RateLimited):
            headers = error.headers
        elif isinstance(error, Unauthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        if error.http_status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, error)
        return problem_response(error.http_status, str(error), headers)

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)  # registered for it only
        return problem_response(error.status_code, str(error.detail), error.headers)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)  # registered for it only
        errors = [_validation_message(item) for item in error.errors()]
        summary = "; ".join(f"{item['field']}: {item['message']}" for item in errors[:5])
        route = request.scope.get("route")
        template = str(getattr(route, "path", "unmatched"))  # bounded labels, never the URL
        locations = {str(item.get("loc", ("body",))[0]) for item in error.errors()}
        services = getattr(request.app.state, "services", None)
        if services is not None:
            for location in sorted(locations):
                services.metrics.invalid_input.labels(route=template, location=location).inc()
        log.info("%s %s refused: %s", request.method, template, summary)
        return problem_response(422, f"invalid request: {summary}", errors=errors)

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        # A bug, not a client's fault: logged with its traceback, answered without one.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error; it has been logged")

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": description}
    for status, description in (
        (400, "Bad request"),
        (401, "Missing, invalid or expired credentials"),
        (413, "Request body over the gateway's size limit"),
        (422, "Invalid input"),
        (429, "Rate limited"),
    )
}
# A route naming one thing (a user, an instrument, an alert) answers 404 when it is not there.
NOT_FOUND_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: PROBLEM_RESPONSES[400] | {"description": "Not found"}
}
# Routes behind a role (deps.require_role) answer 403 to a signed-in user without it.
FORBIDDEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: PROBLEM_RESPONSES[400] | {"description": "Signed in without the role this needs"}
}
