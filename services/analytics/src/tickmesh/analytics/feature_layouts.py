"""The id of each feature name list in `feature_layouts`, for the packed values beside the JSON.

A feature row stores its values twice: as JSON for the APIs, and packed as big-endian float8
in the order of a name list (`feature_layout`, `feature_values`; migration 0012), which an
export reads without parsing JSON. One feature version computes the same names every bar, so
a process meets a handful of lists: each is assigned an id once and cached.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from functools import lru_cache

import asyncpg

from tickmesh.core.db.pool import Connection

# DO UPDATE rather than DO NOTHING: a list that another process added meanwhile comes back too.
_ASSIGN_ONE = (
    "INSERT INTO feature_layouts (names) VALUES ($1) "
    "ON CONFLICT (names) DO UPDATE SET names = EXCLUDED.names RETURNING id"
)


@lru_cache(maxsize=64)
def _packer(count: int) -> struct.Struct:
    return struct.Struct(f">{count}d")


def pack_values(values: Mapping[str, float]) -> bytes:
    """The values in their mapping's order as big-endian float8; NaN for one not finite."""
    packer = _packer(len(values))
    numbers = values.values()
    if all(map(math.isfinite, numbers)):
        return packer.pack(*numbers)
    return packer.pack(*(v if math.isfinite(v) else math.nan for v in numbers))


class FeatureLayouts:
    """Each name list's layout id, cached once assigned. One object per database."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, ...], int] = {}

    async def of(
        self, conn: Connection | asyncpg.Pool, rows: Sequence[Mapping[str, float]]
    ) -> list[int]:
        """The layout id of each row's names (its mapping's order); unknown lists assigned first.

        Call it outside a transaction that may roll back: an id assigned inside it would be
        cached, yet its row gone.
        """
        ids = self._ids
        keys = [tuple(row) for row in rows]
        for key in set(keys) - ids.keys():
            ids[key] = int(await conn.fetchval(_ASSIGN_ONE, list(key)))
        return [ids[key] for key in keys]
