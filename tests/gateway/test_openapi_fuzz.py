"""Schemathesis over the gateway's OpenAPI document, against a real process: never a 5xx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from .processes import ADMIN, login, start_collector, start_gateway


@pytest.fixture(scope="module")
async def fuzz_target(
    module_database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[schemathesis.BaseSchema, dict[str, str]]]:
    """A gateway with a real collector (bars and analytics down) and an admin's header.

    On a database of its own: the fuzzer edits and disables users with admin rights, and on
    the run's shared database it could demote the admin other tests start their gateways as."""
    database_url, redis_url = module_database_url, module_redis_url
    logs = tmp_path_factory.mktemp("fuzz")
    collector, address = await start_collector(database_url, redis_url, logs / "collector.log")
    gateway = await start_gateway(
        database_url,
        redis_url,
        logs / "gateway.log",
        TICKMESH_COLLECTOR_ADDRESS=address,
        TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE="1000000",
        TICKMESH_GATEWAY_AUTH_RATE_LIMIT_PER_MINUTE="1000000",
        TICKMESH_GATEWAY_ADMIN_USERNAME="fuzzadmin",
    )
    async with httpx.AsyncClient(base_url=gateway.base_url) as client:
        headers = await login(client, "fuzzadmin", ADMIN[1])
    schema = schemathesis.openapi.from_url(f"{gateway.base_url}/openapi.json")
    yield schema, headers
    await gateway.stop()
    await collector.stop()
    assert "Traceback" not in gateway.log()


MAX_EXAMPLES_PER_OPERATION = 10


def test_api_never_answers_5xx_except_503(
    fuzz_target: tuple[schemathesis.BaseSchema, dict[str, str]],
) -> None:
    schema, admin_headers = fuzz_target
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) >= 20

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            # A failure is reported as found: shrinking it would re-run many slow calls.
            phases=[Phase.explicit, Phase.generate],
        )
        def never_5xx(case: schemathesis.Case[Any]) -> None:
            response = case.call(headers=admin_headers, timeout=10)
            if response.status_code == 503:
                # Bars and analytics are down on purpose: a 503 problem is the right answer.
                assert response.headers["content-type"] == ["application/problem+json"]
                return
            case.validate_response(response, checks=[not_a_server_error])

        never_5xx()
