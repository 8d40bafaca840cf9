"""The header a BarService.Subscribe call is live with: every final after its change id reaches it.

The bar service sends it as soon as the subscription exists, before any bar; a client that has
received no final yet resumes a later call from there, so a stream reopened with another
filter loses nothing committed in between.
"""

from __future__ import annotations

from collections.abc import Iterable

LIVE_AFTER_HEADER = "tickmesh-live-after-change-id"


def live_after(metadata: Iterable[tuple[str, str | bytes]] | None) -> int | None:
    """The change id in `metadata`'s live-after header; None without one (an older service)."""
    for key, value in metadata or ():
        if key == LIVE_AFTER_HEADER:
            text = value.decode() if isinstance(value, bytes) else value
            return int(text) if text.isdigit() else None
    return None
