"""The browser tests run last, against a demo mesh started when the session begins.

The replay test plays minutes of the demo's own history: started early, the demo makes that
history while the rest of the suite runs, instead of the suite waiting minutes for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .demo_mesh import DemoMesh

HERE = Path(__file__).resolve().parent
_DEMO = pytest.StashKey[DemoMesh]()


def _is_here(item: pytest.Item) -> bool:
    return HERE in Path(item.path).resolve().parents


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move this directory's tests to the end of the run, keeping their order."""
    items.sort(key=_is_here)  # a stable sort: False (elsewhere) first


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the demo now when any browser test is going to run."""
    if session.config.option.collectonly:
        return
    if any(_is_here(item) for item in session.items):
        demo = DemoMesh()
        demo.start()
        session.config.stash[_DEMO] = demo


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the early demo, if one was started."""
    demo = session.config.stash.get(_DEMO, None)
    if demo is not None:
        demo.close()


@pytest.fixture(scope="session")
def demo_gateway(request: pytest.FixtureRequest) -> Iterator[str]:
    """The gateway URL of the demo mesh (started at collection, or now when run otherwise)."""
    demo = request.config.stash.get(_DEMO, None)
    if demo is not None:
        yield demo.ready()
        return
    demo = DemoMesh()
    try:
        yield demo.ready()
    finally:
        demo.close()
