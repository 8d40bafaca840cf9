"""Where the shared market-data fixtures (the tests' and benchmarks' outside truth) live.

`$TICKMESH_FIXTURES` when set; otherwise `shared/fixtures` beside the checkout, or beside
the checkout it was cloned from (a fresh clone in a scratch directory still finds them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[3]


def _origin_checkout() -> Path | None:
    """The local directory this checkout was cloned from, if it was cloned from one."""
    try:
        url = subprocess.run(
            ["git", "-C", str(_CHECKOUT), "config", "--get", "remote.origin.url"],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(url.removeprefix("file://"))
    return path.resolve() if url and path.is_dir() else None


def fixtures_root() -> Path:
    """The shared fixtures directory (see the module docstring for where it is looked for)."""
    configured = os.environ.get("TICKMESH_FIXTURES")
    if configured:
        return Path(configured)
    beside = _CHECKOUT.parent / "shared" / "fixtures"
    if beside.is_dir():
        return beside
    origin = _origin_checkout()
    if origin is not None and (origin.parent / "shared" / "fixtures").is_dir():
        return origin.parent / "shared" / "fixtures"
    return beside  # absent: the tests that need it say where they looked


# The value columns of a Binance Vision kline CSV that bars must equal exactly (README
# section 1a of the fixtures); "count" is the bar's trade_count.
BINANCE_KLINE_FIELDS = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
)
