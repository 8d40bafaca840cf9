"""array_send's bytes from a real PostgreSQL read by numpy: values, empty and NULL arrays, and
the arrays it must refuse (NULL elements, two dimensions, another width)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from tickmesh.core.db.binary_arrays import BinaryArrayError, fixed_width_array
from tickmesh.core.db.copy_binary import PG_EPOCH_US


async def test_bigints_and_timestamps_read_as_sent(db_pool: asyncpg.Pool) -> None:
    values = [-(2**63), -1, 0, 1, 2**63 - 1]
    sent = await db_pool.fetchval("SELECT array_send($1::bigint[])", values)
    assert fixed_width_array(sent, ">i8").tolist() == values
    moments = [datetime(2024, 8, 8, 12, 0, 3, 123456, tzinfo=UTC), datetime(1999, 1, 1, tzinfo=UTC)]
    sent = await db_pool.fetchval("SELECT array_send($1::timestamptz[])", moments)
    micros = fixed_width_array(sent, ">i8") + PG_EPOCH_US
    assert micros.tolist() == [round(m.timestamp() * 1_000_000) for m in moments]
    sent = await db_pool.fetchval("SELECT array_send($1::int[])", [7, -7])
    assert fixed_width_array(sent, ">i4").tolist() == [7, -7]


async def test_no_rows_and_an_empty_array_read_as_empty(db_pool: asyncpg.Pool) -> None:
    none = await db_pool.fetchval("SELECT array_send(array_agg(x)) FROM generate_series(1, 0) x")
    assert none is None
    assert fixed_width_array(none, ">i8").tolist() == []
    empty = await db_pool.fetchval("SELECT array_send('{}'::bigint[])")
    assert fixed_width_array(empty, ">i8").tolist() == []


@pytest.mark.parametrize(
    ("sql", "dtype"),
    [
        ("SELECT array_send(ARRAY[1, NULL]::bigint[])", ">i8"),
        ("SELECT array_send(ARRAY[[1, 2], [3, 4]]::bigint[])", ">i8"),
        ("SELECT array_send(ARRAY[1, 2]::int[])", ">i8"),
        ("SELECT array_send(ARRAY[1, 2]::bigint[])", ">i4"),
    ],
)
async def test_arrays_not_a_flat_list_of_the_width_are_refused(
    db_pool: asyncpg.Pool, sql: str, dtype: str
) -> None:
    sent = await db_pool.fetchval(sql)
    with pytest.raises(BinaryArrayError):
        fixed_width_array(sent, dtype)
