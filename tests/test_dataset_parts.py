"""Lining a chunk's indicator and feature rows up on its bars by open time (no database)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tickmesh.datasets.parts import align, epoch_us
from tickmesh.datasets.schema import TIME


def test_align_same_times_returns_the_columns_as_they_are() -> None:
    column = pa.array([1.0, 2.0])
    times = np.array([10, 20], dtype=np.int64)
    assert align(times, times.copy(), [column])[0] is column


def test_align_missing_rows_null_and_rows_of_no_bar_left_out() -> None:
    bars = np.array([10, 20, 30, 40], dtype=np.int64)
    rows = np.array([5, 20, 40, 50], dtype=np.int64)
    values = pa.chunked_array([[0.5, 2.0], [4.0, 5.0]])
    names = pa.array(["a", "b", "d", "e"])
    aligned = align(bars, rows, [values, names])
    assert aligned[0].to_pylist() == [None, 2.0, None, 4.0]
    assert aligned[1].to_pylist() == [None, "b", None, "d"]


def test_align_no_rows_gives_all_nulls() -> None:
    bars = np.array([10, 20], dtype=np.int64)
    aligned = align(bars, np.zeros(0, dtype=np.int64), [pa.array([], pa.float64())])
    assert aligned[0].to_pylist() == [None, None]


def test_epoch_us_of_chunked_and_empty_timestamps() -> None:
    chunked = pa.chunked_array([pa.array([1, 2], TIME), pa.array([3], TIME)])
    assert epoch_us(chunked).tolist() == [1, 2, 3]
    # The stubs know only second timestamps for an empty chunk list.
    no_chunks: pa.ChunkedArray[Any] = pa.chunked_array([], type=TIME)  # type: ignore[arg-type]
    assert epoch_us(no_chunks).tolist() == []
