"""format_decimal writes what Python's decimal module writes for the same value."""

from __future__ import annotations

import random
from decimal import Decimal

from tickmesh.core.decimals import MAX_SCALE, format_decimal


def _reference(mantissa: int, scale: int) -> str:
    return format(Decimal(mantissa).scaleb(-scale).normalize(), "f")


def test_format_decimal_equals_the_decimal_module_in_plain_notation() -> None:
    rng = random.Random(20240808)
    cases = [(0, 3), (7, 0), (-5, 3), (1, 18), (-(10**18), 18), (120, 1), (7, -3), (-7, -2)]
    for _ in range(20_000):
        scale = rng.randint(-3, MAX_SCALE)
        magnitude = rng.choice((10, 10**scale if scale > 0 else 10, 10**24))
        mantissa = rng.randint(-magnitude, magnitude) * 10 ** rng.choice((0, 0, 1, 4))
        cases.append((mantissa, scale))
    for mantissa, scale in cases:
        assert format_decimal(mantissa, scale) == _reference(mantissa, scale), (mantissa, scale)
