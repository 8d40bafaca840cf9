"""Small-window statistics on numpy arrays without the per-call overhead of ndarray.mean/std."""

from __future__ import annotations

import math

import numpy as np

from tickmesh.analytics.bars_window import FloatArray


def mean(values: FloatArray) -> float:
    """Return the arithmetic mean of a non-empty array."""
    return float(values.sum()) / int(values.shape[0])


def std(values: FloatArray, ddof: int = 0) -> float:
    """Return the standard deviation (population for ddof=0, sample for ddof=1)."""
    centred = values - mean(values)
    return math.sqrt(float(np.dot(centred, centred)) / (values.shape[0] - ddof))


def zscore_last(values: FloatArray) -> float:
    """Return the last value's z-score against the window (population stdev; 0 if constant)."""
    average = mean(values)
    centred = values - average
    spread = math.sqrt(float(np.dot(centred, centred)) / values.shape[0])
    return (float(values[-1]) - average) / spread if spread > 0.0 else 0.0
