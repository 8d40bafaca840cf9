"""WebSocket delivery of alert firings: each open connection listens for its user's firings."""

from __future__ import annotations

from collections.abc import Callable

from tickmesh.gateway.schemas import AlertEventOut

AlertListener = Callable[[AlertEventOut], None]


class AlertFeed:
    """Listeners by user id, on this replica."""

    def __init__(self) -> None:
        self._listeners: dict[int, set[AlertListener]] = {}

    def add(self, user_id: int, listener: AlertListener) -> None:
        """Deliver the user's firings to `listener` (which must not block)."""
        self._listeners.setdefault(user_id, set()).add(listener)

    def remove(self, user_id: int, listener: AlertListener) -> None:
        """Stop delivering to `listener`."""
        listeners = self._listeners.get(user_id)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[user_id]

    def publish(self, user_id: int, event: AlertEventOut) -> None:
        """Hand a firing to every connection of its user."""
        for listener in tuple(self._listeners.get(user_id, ())):
            listener(event)
