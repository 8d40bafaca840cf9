"""Waiting for a dependency at start: retry with exponential backoff, a log line and a metric per attempt."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

from tickmesh.core.errors import Unavailable
from tickmesh.core.metrics import CoreMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")


async def connect_with_retry(
    dependency: str,
    connect: Callable[[], Awaitable[T]],
    metrics: CoreMetrics,
    give_up_after_seconds: float,
    transient: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `connect` until it succeeds; Unavailable (one line, no traceback) after the deadline.

    Network errors are retried, and so are the dependency's own `transient` errors (a
    database that is starting up or shutting down).
    """
    retried: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError, *transient)

    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        metrics.dependency_attempts.labels(dependency=dependency, outcome="failure").inc()
        sleep = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "%s unreachable (attempt %d): %s; retrying in %.1fs",
            dependency,
            state.attempt_number,
            error,
            sleep,
        )

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(retried),
        wait=wait_exponential_jitter(initial=0.2, max=5.0),
        stop=stop_after_delay(give_up_after_seconds),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        result = cast(T, await retrying(connect))
    except retried as error:
        metrics.dependency_attempts.labels(dependency=dependency, outcome="failure").inc()
        raise Unavailable(
            f"{dependency} unreachable after {give_up_after_seconds:.0f}s: {error}"
        ) from None
    metrics.dependency_attempts.labels(dependency=dependency, outcome="success").inc()
    return result
