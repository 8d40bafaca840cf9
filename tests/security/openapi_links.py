"""OpenAPI links between the gateway's operations, for the stateful fuzzer.

FastAPI does not emit links, and the served document stays as it is: the test adds them to
its copy. Each link says which answer feeds which next call, so a scenario can go
register -> login -> (bearer) alerts CRUD -> refresh -> logout, or, for the admin,
symbols -> charts/features/quality -> deactivate. A registered user is a link away from
the admin changing it (PATCH /users/{id}); the admin's own id is kept out by the test.
"""

from __future__ import annotations

import copy
from typing import Any

BEARER_FROM_TOKENS = "Bearer {$response.body#/access_token}"
# An instrument the test registers and fills with bars, so charts answer 200 with real bars.
KNOWN_INSTRUMENT = "binance_spot:XRPETH"

# (source method, source path, status) -> {link name: (target method, target path, link body)}
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, Any]]]] = {
    ("post", "/api/v1/auth/register", "201"): {
        "Login": (
            "post",
            "/api/v1/auth/login",
            {
                "requestBody": {
                    "username": "$request.body#/username",
                    "password": "$request.body#/password",
                }
            },
        ),
        "PromoteUser": (
            "patch",
            "/api/v1/users/{user_id}",
            {"parameters": {"path.user_id": "$response.body#/id"}},
        ),
    },
    ("post", "/api/v1/symbols", "201"): {
        name: (
            method,
            path,
            {"parameters": {"path.instrument": "$response.body#/instrument"}},
        )
        for name, method, path in (
            ("Chart", "get", "/api/v1/charts/{instrument}"),
            ("Features", "get", "/api/v1/features/{instrument}"),
            ("Quality", "get", "/api/v1/quality/{instrument}"),
            ("Deactivate", "delete", "/api/v1/symbols/{instrument}"),
        )
    },
}


def _token_links() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """What a token pair (login or refresh) leads to: its bearer on every user route."""
    bearer = {"parameters": {"header.Authorization": BEARER_FROM_TOKENS}}
    refresh = {"requestBody": {"refresh_token": "$response.body#/refresh_token"}}
    return {
        "Refresh": ("post", "/api/v1/auth/refresh", refresh),
        "Logout": ("post", "/api/v1/auth/logout", refresh),
        "Me": ("get", "/api/v1/auth/me", bearer),
        "CreateAlert": ("post", "/api/v1/alerts", bearer),
        "ListAlerts": ("get", "/api/v1/alerts", bearer),
        "ListSymbols": ("get", "/api/v1/symbols", bearer),
        "Health": ("get", "/health", {}),
        "ApiHealth": ("get", "/api/v1/health", {}),
        **{
            name: (method, path, {"parameters": {"path.instrument": KNOWN_INSTRUMENT}})
            for name, method, path in (
                ("KnownChart", "get", "/api/v1/charts/{instrument}"),
                ("KnownFeatures", "get", "/api/v1/features/{instrument}"),
                ("KnownQuality", "get", "/api/v1/quality/{instrument}"),
            )
        },
    }


def _alert_links() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """What a created alert leads to (as the same user: the fuzzer keeps a scenario's token)."""
    by_id = {"parameters": {"path.alert_id": "$response.body#/id"}}
    return {
        "GetAlert": ("get", "/api/v1/alerts/{alert_id}", by_id),
        "ReplaceAlert": ("put", "/api/v1/alerts/{alert_id}", by_id),
        "AlertEvents": ("get", "/api/v1/alerts/{alert_id}/events", by_id),
        "DeleteAlert": ("delete", "/api/v1/alerts/{alert_id}", by_id),
    }


def add_links(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of the gateway's OpenAPI document with the links above in its responses."""
    linked = copy.deepcopy(document)
    paths = linked["paths"]
    links = dict(LINKS)
    links[("post", "/api/v1/auth/login", "200")] = _token_links()
    links[("post", "/api/v1/auth/refresh", "200")] = _token_links()
    links[("post", "/api/v1/alerts", "201")] = _alert_links()
    for (method, path, status), targets in links.items():
        response = paths[path][method]["responses"][status]
        response["links"] = {
            name: {"operationId": paths[target_path][target_method]["operationId"], **body}
            for name, (target_method, target_path, body) in targets.items()
        }
    return linked
