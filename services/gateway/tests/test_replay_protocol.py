"""Replay socket messages: valid ones parsed, bad ones answered with a text naming the field."""

from __future__ import annotations

import json

import pytest

from tickmesh.gateway.replay_protocol import (
    SeekMessage,
    SpeedMessage,
    StartMessage,
    parse_message,
    speed_value,
)


def test_start_takes_iso_or_epoch_ms_and_max_speed() -> None:
    message = parse_message(
        json.dumps(
            {
                "type": "start",
                "timeframe": "1m",
                "from": "2024-08-08T00:00:00Z",
                "to": 1723082400000,  # 02:00 UTC in epoch ms
                "speed": "max",
            }
        )
    )
    assert isinstance(message, StartMessage)
    assert message.end is not None
    assert (message.end - message.start).total_seconds() == 7200
    assert speed_value(message.speed) == 0.0


def test_start_defaults_to_real_time_up_to_now() -> None:
    message = parse_message('{"type": "start", "timeframe": "5m", "from": "2024-08-08"}')
    assert isinstance(message, StartMessage)
    assert (message.end, speed_value(message.speed)) == (None, 1.0)


def test_steering_messages_parse() -> None:
    assert isinstance(parse_message('{"type": "speed", "speed": 60}'), SpeedMessage)
    seek = parse_message('{"type": "seek", "time": "2024-08-08T01:00:00Z"}')
    assert isinstance(seek, SeekMessage)


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("not json", "messages are JSON objects"),
        ("[1, 2]", "messages are JSON objects"),
        ('{"type": "play"}', "type: one of start, pause, resume, seek, speed, ping"),
        ("{}", "type: one of"),
        ('{"type": "start", "timeframe": "7m", "from": "2024-08-08"}', "timeframe:"),
        ('{"type": "start", "timeframe": "1m"}', "from: Field required"),
        ('{"type": "start", "timeframe": "1m", "from": "yesterday"}', "from:"),
        ('{"type": "start", "timeframe": "1m", "from": "1900-01-01"}', "from: Value error"),
        (
            '{"type": "start", "timeframe": "1m", "from": "2024-08-09", "to": "2024-08-08"}',
            "from must be before to",
        ),
        ('{"type": "speed", "speed": 0}', 'speed: "max", or a number over 0'),
        ('{"type": "speed", "speed": "fast"}', "speed:"),
        ('{"type": "speed", "speed": 1e9}', "at most 10000"),
        ('{"type": "seek"}', "time: Field required"),
        ('{"type": "pause", "now": true}', "now: Extra inputs are not permitted"),
    ],
)
def test_bad_message_is_answered_naming_the_field(raw: str, said: str) -> None:
    answer = parse_message(raw)
    assert isinstance(answer, str)
    assert said in answer
