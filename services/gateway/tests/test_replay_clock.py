"""The replay clock: commit times to wall times at a speed, across pause, resume, seek, speed."""

from __future__ import annotations

import math

from tickmesh.gateway.replay_clock import NS_PER_SECOND, ReplayClock


class _Wall:
    """A hand-moved wall clock (seconds)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


T0 = 1_723_075_200 * NS_PER_SECOND  # 2024-08-08 00:00 UTC


def test_clock_at_60x_runs_a_minute_of_commits_per_second() -> None:
    wall = _Wall()
    clock = ReplayClock(T0, 60.0, wall)
    assert clock.delay_seconds(T0) == 0.0  # the first item sets the clock
    assert clock.delay_seconds(T0 + 60 * NS_PER_SECOND) == 1.0
    wall.now += 0.5
    assert clock.position_ns() == T0 + 30 * NS_PER_SECOND
    assert clock.delay_seconds(T0 + 60 * NS_PER_SECOND) == 0.5
    assert clock.delay_seconds(T0) == 0.0  # already due


def test_clock_skips_an_empty_lead_in_but_not_a_gap_after_a_seek() -> None:
    wall = _Wall()
    clock = ReplayClock(T0, 1.0, wall)
    first = T0 + 3600 * NS_PER_SECOND  # an hour of nothing before the first item
    assert clock.delay_seconds(first) == 0.0
    assert clock.delay_seconds(first + 2 * NS_PER_SECOND) == 2.0
    clock.seek(T0)
    assert clock.delay_seconds(first) == 3600.0


def test_clock_paused_never_releases_and_resumes_where_it_stopped() -> None:
    wall = _Wall()
    clock = ReplayClock(T0, 10.0, wall)
    wall.now += 1.0
    clock.pause()
    wall.now += 50.0
    assert clock.position_ns() == T0 + 10 * NS_PER_SECOND
    assert math.isinf(clock.delay_seconds(T0))
    clock.resume()
    wall.now += 1.0
    assert clock.position_ns() == T0 + 20 * NS_PER_SECOND


def test_clock_speed_change_keeps_position() -> None:
    wall = _Wall()
    clock = ReplayClock(T0, 1.0, wall)
    wall.now += 2.0
    clock.set_speed(60.0)
    assert clock.position_ns() == T0 + 2 * NS_PER_SECOND
    wall.now += 1.0
    assert clock.position_ns() == T0 + 62 * NS_PER_SECOND


def test_clock_at_max_speed_releases_at_once_and_follows_the_stream() -> None:
    wall = _Wall()
    clock = ReplayClock(T0, 0.0, wall)
    assert clock.delay_seconds(T0 + 3600 * NS_PER_SECOND) == 0.0
    clock.delivered(T0 + 3600 * NS_PER_SECOND)
    assert clock.position_ns() == T0 + 3600 * NS_PER_SECOND
    clock.set_speed(1.0)  # from max to paced: on from where the stream got to
    wall.now += 1.0
    assert clock.position_ns() == T0 + 3601 * NS_PER_SECOND


def test_clock_seek_moves_the_position_keeping_pause() -> None:
    wall = _Wall()
    clock = ReplayClock(T0, 60.0, wall)
    clock.pause()
    clock.seek(T0 + 600 * NS_PER_SECOND)
    wall.now += 5.0
    assert clock.position_ns() == T0 + 600 * NS_PER_SECOND
    assert clock.paused
