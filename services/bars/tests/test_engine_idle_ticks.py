"""Wall-clock ticks skip idle instruments until a minute can change, and emit exactly what a tick of
every instrument emits: the same finals, flat bars and revisions at the same ticks."""

from __future__ import annotations

import numpy as np

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun
from tickmesh.core.timeframes import NS_PER_MINUTE, NS_PER_SECOND

WALL_START = 1_750_000_000 * NS_PER_SECOND + 17 * NS_PER_SECOND
TICK = NS_PER_SECOND // 4
SYMBOLS = [f"SYM{i}" for i in range(6)]
# A feed of past trades: its clock runs from its last event, not the wall clock.
REPLAYED = "OLD"


class EveryInstrumentTicked(BarEngine):
    """The engine as it ticked before: every instrument's clock read and advanced on every tick."""

    def advance(self, now_ns: int) -> list[BarUpdate]:
        if self._clock_ns is None or now_ns > self._clock_ns:
            self._clock_ns = now_ns
        updates: list[BarUpdate] = []
        for key, state in self._symbols.items():
            clock = state.symbol_clock_ns(now_ns)
            if clock is not None and state.advance(
                clock - self.config.allowed_lateness_ns, updates
            ):
                self._changed.add(key)
        return updates


def _run(symbol: str, first_id: int, times: list[int], rng: np.random.Generator) -> TradeRun:
    size = len(times)
    return TradeRun.from_columns(
        1,
        symbol,
        list(range(first_id, first_id + size)),
        rng.integers(9_000, 11_000, size).tolist(),
        rng.integers(1, 500, size).tolist(),
        times,
        price_scale=2,
        quantity_scale=3,
    )


def test_ticks_that_skip_idle_instruments_emit_what_ticking_every_instrument_emits() -> None:
    rng = np.random.default_rng(5)
    skipping, reference = BarEngine(), EveryInstrumentTicked()
    next_id = dict.fromkeys([*SYMBOLS, REPLAYED], 1)
    replay_ns = WALL_START - 3 * 24 * 60 * NS_PER_MINUTE
    emitted = 0
    # Seven minutes of wall time: trades now and then (some late, so revisions), ticks between.
    for step in range(7 * 60 * NS_PER_SECOND // TICK):
        wall = WALL_START + step * TICK
        ticked = skipping.advance(wall)
        assert ticked == reference.advance(wall), wall
        emitted += len(ticked)
        runs: list[TradeRun] = []
        for symbol in SYMBOLS:
            if rng.random() < 0.05:
                # Mostly current trades; one in ten up to 90 s late (a revision once final).
                lag = int(rng.uniform(0, 90)) * NS_PER_SECOND if rng.random() < 0.1 else 0
                times = sorted(int(wall - lag - rng.integers(0, TICK)) for _ in range(3))
                runs.append(_run(symbol, next_id[symbol], times, rng))
                next_id[symbol] += 3
        if step % 40 == 0:
            replay_ns += 30 * NS_PER_SECOND
            runs.append(_run(REPLAYED, next_id[REPLAYED], [replay_ns], rng))
            next_id[REPLAYED] += 1
        for run in runs:
            got = skipping.apply_trades(run).updates
            want = reference.apply_trades(run).updates
            assert got == want
            emitted += len(got)
    assert emitted > 0
    for symbol in [*SYMBOLS, REPLAYED]:
        got_state = skipping.snapshot_symbol(1, symbol)
        want_state = reference.snapshot_symbol(1, symbol)
        # Between minute boundaries a skipped tick leaves the frontier where the last one that
        # could change anything put it; only its minute matters.
        for state in (got_state, want_state):
            state["frontier_ns"] -= state["frontier_ns"] % NS_PER_MINUTE
        assert got_state == want_state, symbol
