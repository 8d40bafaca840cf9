"""Schemathesis, stateful, over the gateway's whole OpenAPI: no 5xx, answers as documented.

The gateway is a real `python -m tickmesh.gateway` on the run's PostgreSQL and Redis, with a
real collector, bar service and analytics service on loopback. OpenAPI links (added to the
served document here, see `openapi_links`) chain register -> login -> the bearer token ->
alerts CRUD -> refresh -> logout, and symbols -> charts for the admin, so the fuzzer reaches
the states a client reaches rather than bouncing off 401s.

The suite runs a short version (FUZZ_CASES calls); `make fuzz` sets TICKMESH_FUZZ_CASES=1000.
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky
from requests.structures import CaseInsensitiveDict
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.stateful.state_machine import APIStateMachine
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ..gateway.processes import BarsAnalyticsGateway, bars_analytics_gateway
from ..ingest_helpers import fixtures_root, publish, xrpeth_batches
from .openapi_links import KNOWN_INSTRUMENT, add_links

# Calls (API requests) the run makes at least: short in the suite, 1,000+ under `make fuzz`.
FUZZ_CASES = int(os.environ.get("TICKMESH_FUZZ_CASES", "200"))
XRPETH_CAPTURE = (
    "binance_spot/freqtrade_XRPETH/XRPETH-aggTrades-2019-10-11_to_2019-10-13.derived.csv"
)
TOKEN_PATHS = {"/api/v1/auth/login", "/api/v1/auth/refresh"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class FuzzTarget:
    """The running mesh, the linked schema and the admin's header."""

    mesh: BarsAnalyticsGateway
    schema: Any  # schemathesis.specs.openapi.schemas.OpenApiSchema (untyped upstream)
    admin_id: int
    calls: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def fuzz_target(
    database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FuzzTarget]:
    """Collector, bars, analytics and a gateway (whose limits a fuzzer does not reach)."""
    logs = tmp_path_factory.mktemp("fuzz")
    async with bars_analytics_gateway(
        database_url,
        module_redis_url,
        logs / "gateway.log",
        # The limiter stays on; its buckets are just deeper than this run's calls.
        TICKMESH_GATEWAY_RATE_LIMIT_PER_MINUTE="1000000",
        TICKMESH_GATEWAY_AUTH_RATE_LIMIT_PER_MINUTE="1000000",
        # Self-registered users may own alerts, so register -> login -> alerts is a path.
        TICKMESH_GATEWAY_SIGNUP_ROLE="trader",
    ) as mesh:
        await _fill_known_instrument(mesh)
        async with httpx.AsyncClient(base_url=mesh.gateway.base_url) as client:
            document = (await client.get("/openapi.json")).json()
            me = await client.get("/api/v1/auth/me", headers=mesh.headers)
        schema = schemathesis.openapi.from_dict(add_links(document))
        schema.config.update(base_url=mesh.gateway.base_url)
        # Tokens come from links or the admin (`before_call`), not from random bearer text:
        # random tokens are a 401 on every route, which test_jwt_attacks covers.
        schema.config.generation.update(with_security_parameters=False)
        yield FuzzTarget(mesh, schema, admin_id=me.json()["id"])
        log = mesh.gateway.log()
    assert "Traceback" not in log, log[-4000:]


async def _fill_known_instrument(mesh: BarsAnalyticsGateway) -> None:
    """Register KNOWN_INSTRUMENT and publish a real trade capture of it into the bar service."""
    venue, symbol = KNOWN_INSTRUMENT.split(":")
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url) as client:
        added = await client.post(
            "/api/v1/symbols",
            json={"exchange": venue, "symbol": symbol, "asset_type": "crypto"},
            headers=mesh.headers,
        )
        assert added.status_code == 201, added.text
    batches = xrpeth_batches(fixtures_root() / XRPETH_CAPTURE, "fuzz")
    assert await publish(mesh.bars.address, batches) == batches[-1].sequence


def machine_for(target: FuzzTarget) -> type[APIStateMachine]:
    """The schema's state machine, calling as the admin unless a link carried a user's token."""
    base: type[APIStateMachine] = target.schema.as_state_machine()
    admin_headers = target.mesh.headers

    class GatewayMachine(base):  # type: ignore[misc, valid-type]
        calls: ClassVar[list[str]] = target.calls
        failures: ClassVar[list[str]] = target.failures

        def setup(self) -> None:
            """A scenario starts as the admin."""
            self.bearer = admin_headers["Authorization"]

        def before_call(self, case: schemathesis.Case[Any]) -> None:
            """The scenario's token on calls whose link did not set one.

            That is the admin's until a login or refresh in this scenario answers, then that
            user's: a link from a created alert to reading it then reads as its owner.
            """
            if case.path_parameters and case.path_parameters.get("user_id") == target.admin_id:
                # Demoting or disabling the admin the run signs in as would turn every later
                # admin call into a 401/403 and blind the run; another id is as good a probe.
                case.path_parameters["user_id"] = target.admin_id + 1
            if case.headers is None or "authorization" not in case.headers:
                # CaseInsensitiveDict: one lookup whatever the case a link wrote it in.
                case.headers = CaseInsensitiveDict(case.headers or {})
                case.headers["Authorization"] = self.bearer

        def get_call_kwargs(self, case: schemathesis.Case[Any]) -> dict[str, Any]:
            """A timeout, so a hanging route fails rather than stalls the run."""
            return {"timeout": 10}

        def after_call(self, response: Any, case: schemathesis.Case[Any]) -> None:
            """Count the call; a new token pair becomes the scenario's bearer."""
            if case.operation.path in TOKEN_PATHS and response.status_code == 200:
                self.bearer = f"Bearer {response.json()['access_token']}"
            self.calls.append(f"{case.operation.label} {response.status_code}")

        def validate_response(
            self, response: Any, case: schemathesis.Case[Any], **kwargs: Any
        ) -> None:
            """Run our checks and keep what fails, rather than raise into Hypothesis.

            The server keeps state between scenarios, so Hypothesis cannot replay one (a
            replayed register answers 409): a raised failure would come back as `Flaky`
            and hide the finding. Collected here, every finding is reported with its call.
            """
            try:
                case.validate_response(response, checks=CHECKS)
            except FailureGroup as group:
                for failure in group.exceptions:
                    self.failures.append(
                        f"{case.operation.label} -> {response.status_code}: {failure}\n"
                        f"{case.as_curl_command()}\n{response.text[:500]}"
                    )

    return GatewayMachine


def test_openapi_stateful_fuzz_finds_no_server_error(fuzz_target: FuzzTarget) -> None:
    """At least FUZZ_CASES calls over every operation, each answered as the schema says."""
    machine = machine_for(fuzz_target)
    run_settings = settings(
        max_examples=max(FUZZ_CASES // 8, 10),  # scenarios of ~8 calls
        stateful_step_count=10,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        # A failure is reported as found: shrinking would re-run many slow calls.
        phases=[Phase.generate],
    )
    operations = {
        result.ok().label
        for result in fuzz_target.schema.get_all_operations()
        if result.ok() is not None
    }
    while len(fuzz_target.calls) < FUZZ_CASES:
        # Hypothesis stops a run whose replay differs (the server remembers earlier calls);
        # the calls it made were checked all the same, so the next run goes on from there.
        with contextlib.suppress(Flaky):
            machine.run(settings=run_settings)
    # What the link graph seldom draws (logout sits behind a fresh login, health behind many
    # siblings) is still called: a few stateless cases each, as the admin, same checks.
    for operation in fuzz_target.schema.get_all_operations():
        if operation.ok() is not None and operation.ok().label in _missed(
            operations, fuzz_target.calls
        ):
            _call_alone(fuzz_target, operation.ok())
    distinct = sorted({failure.split("\n", 1)[0] for failure in fuzz_target.failures})
    assert not fuzz_target.failures, "\n".join(distinct) + "\n\n" + fuzz_target.failures[0]
    print(collections.Counter(fuzz_target.calls).most_common())  # noqa: T201
    missed = _missed(operations, fuzz_target.calls)
    assert not missed, f"never called: {sorted(missed)}"
    # The figure `make fuzz` reports.
    print(f"\nopenapi fuzz: {len(fuzz_target.calls)} calls, 0 failures")  # noqa: T201


def _missed(operations: set[str], calls: list[str]) -> set[str]:
    """The operations no call has reached yet."""
    return operations - {call.rsplit(" ", 1)[0] for call in calls}


def _call_alone(target: FuzzTarget, operation: Any) -> None:
    """A few generated cases of one operation outside any scenario, checked like the rest."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=5,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    def call(case: schemathesis.Case[Any]) -> None:
        response = case.call(headers=target.mesh.headers, timeout=10)
        target.calls.append(f"{operation.label} {response.status_code}")
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            target.failures.extend(
                f"{operation.label} -> {response.status_code}: {failure}"
                for failure in group.exceptions
            )

    call()
