"""The whole-market source: thousands of instruments on spot and USD-M, Zipf-skewed, with bursts.

A real deployment follows every USDT pair of both Binance venues: a few instruments trade
thousands of times a second, most a few times a minute, and the whole market surges when
it moves. This source plays that shape at a target total rate, with periodic bursts, and
stamps every trade with its exchange time (the time it is due), so the mesh's latency can
be measured from it.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator

from tickmesh.collector.simulator.config import Market, WholeMarket
from tickmesh.collector.simulator.sources import SimEvent, SimTrade, fixed_point

# Instruments are drawn in chunks: one random.choices call per chunk costs far less than one
# per trade, and a chunk (~50 ms at 20,000 trades/s) is short next to a burst.
_CHUNK = 1024
_NS_PER_S = 1_000_000_000
_LOTS = 2_000
# How far a live market's schedule may fall behind the wall clock before it skips ahead.
_MAX_LAG_NS = 100_000_000


def instrument_name(index: int) -> str:
    """The symbol of instrument `index` (0 is the busiest): W0000USDT, W0001USDT, ..."""
    return f"W{index:04d}USDT"


def instrument_market(index: int) -> Market:
    """The venue of instrument `index`: even ones on spot, odd ones on USD-M."""
    return Market.SPOT if index % 2 == 0 else Market.USDM


def whole_market_instruments(spec: WholeMarket) -> dict[Market, list[str]]:
    """The symbols each venue lists, busiest first."""
    listed: dict[Market, list[str]] = {Market.SPOT: [], Market.USDM: []}
    for index in range(spec.instruments):
        listed[instrument_market(index)].append(instrument_name(index))
    return listed


def in_burst(spec: WholeMarket, elapsed_s: float) -> bool:
    """Whether `elapsed_s` seconds after the start fall in a burst (the end of each period)."""
    if spec.burst_every_s <= 0 or spec.burst_s <= 0:
        return False
    return elapsed_s % spec.burst_every_s >= spec.burst_every_s - spec.burst_s


def rate_at(spec: WholeMarket, elapsed_s: float) -> float:
    """The total trade rate (trades/s) `elapsed_s` seconds after the start."""
    return spec.burst_rate if in_burst(spec, elapsed_s) else spec.rate


def _phase(spec: WholeMarket, start_ns: int, at_ns: int) -> tuple[int, int]:
    """The spacing of trades (ns) at `at_ns`, and when that rate next changes."""
    elapsed_s = (at_ns - start_ns) / _NS_PER_S
    step_ns = round(_NS_PER_S / rate_at(spec, elapsed_s))
    if spec.burst_every_s <= 0 or spec.burst_s <= 0:
        return step_ns, 2**63
    period_start_s = elapsed_s - elapsed_s % spec.burst_every_s
    burst_start_s = period_start_s + spec.burst_every_s - spec.burst_s
    change_s = burst_start_s if elapsed_s < burst_start_s else period_start_s + spec.burst_every_s
    return step_ns, start_ns + round(change_s * _NS_PER_S)


def trade_shares(spec: WholeMarket) -> list[float]:
    """Each instrument's expected share of all trades (Zipf weights, summing to 1)."""
    weights = [1.0 / (index + 1) ** spec.skew for index in range(spec.instruments)]
    total = sum(weights)
    return [weight / total for weight in weights]


def whole_market_events(
    spec: WholeMarket, *, seed: int, start_ms: int | None
) -> Iterator[SimEvent]:
    """Trades of every instrument in time order, from `start_ms`, forever or `spec.trades`.

    start_ms=None starts at the wall clock when the first trade is read (a paused simulator's
    trades then carry the time they are really released, not the time it was built).
    """
    live = start_ms is None
    if start_ms is None:
        start_ms = time.time_ns() // 1_000_000
    rng = random.Random(f"{seed}:whole-market")
    count = spec.instruments
    cumulative = list(itertools.accumulate(1.0 / (i + 1) ** spec.skew for i in range(count)))
    names = [instrument_name(index) for index in range(count)]
    markets = [instrument_market(index) for index in range(count)]
    streams = [f"{name.lower()}@trade" for name in names]
    prices = [rng.randint(1_000, 5_000_000) for _ in range(count)]
    trade_ids = [rng.randrange(1_000_000, 100_000_000) for _ in range(count)]
    # Quantities are drawn from 2,000 lot sizes: their text is written once, not per trade.
    quantities = {
        spot: [fixed_point(lots, 3, 8 if spot else 3) for lots in range(_LOTS + 1)]
        for spot in (True, False)
    }
    start_ns = start_ms * 1_000_000
    at_ns = start_ns
    emitted = 0
    indices = range(count)
    step_ns, phase_end_ns = 0, start_ns
    while spec.trades is None or emitted < spec.trades:
        if live and time.time_ns() - at_ns > _MAX_LAG_NS:
            # Read later than due: the machine cannot release this rate. The market moves on
            # with the clock (the trades it could not release are never made), so exchange
            # times stay true and the rate released shows what was reached.
            at_ns = time.time_ns()
        for index in rng.choices(indices, cum_weights=cumulative, k=_CHUNK):
            if spec.trades is not None and emitted >= spec.trades:
                return
            if at_ns >= phase_end_ns:
                step_ns, phase_end_ns = _phase(spec, start_ns, at_ns)
            at_ns += step_ns
            market = markets[index]
            price = prices[index] = max(1, prices[index] + int(rng.random() * 3.0) - 1)
            # Spot quotes 8 decimals; USD-M 2 for prices and 3 for quantities, as on Binance.
            spot = market is Market.SPOT
            trade = SimTrade(
                market,
                names[index],
                trade_ids[index],
                fixed_point(price, 2, 8 if spot else 2),
                quantities[spot][int(rng.random() * _LOTS) + 1],
                at_ns // 1_000_000,
                rng.random() < 0.5,
            )
            trade_ids[index] += 1
            emitted += 1
            yield SimEvent(at_ns, market, streams[index], trade=trade)


# Trades kept per instrument when the simulator runs a whole market from the command line: a
# day of 20,000 trades/s would otherwise hold billions; REST backfill needs the recent ones.
LEDGER_TRADES_PER_SYMBOL = 1_000


def instrument_count(symbols: str) -> int | None:
    """N when a `--symbols` value is a number (a whole market of N instruments), else None."""
    text = symbols.strip()
    if not text.isdigit():
        return None
    if int(text) < 1:
        raise ValueError("--symbols N needs at least one instrument")
    return int(text)
