"""The messages a `/ws/replay/{instrument}` client sends, validated with a clear error each."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from tickmesh.gateway.schemas import StrictModel, TimeframeLabel, UtcTime

MAX_SPEED = 10_000.0
# "max" is as fast as the client reads; a number is a multiple of real time.
Speed = Literal["max"] | Annotated[float, Field(gt=0, le=MAX_SPEED)]


def speed_value(speed: Speed) -> float:
    """The speed as the replay contract has it (0 for "max")."""
    return 0.0 if speed == "max" else float(speed)


class StartMessage(StrictModel):
    """Start (or restart) a replay of one timeframe over [from, to) of commit times."""

    type: Literal["start"]
    timeframe: TimeframeLabel
    start: UtcTime = Field(alias="from")
    end: UtcTime | None = Field(default=None, alias="to")
    speed: Speed = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> StartMessage:
        if self.end is not None and self.start >= self.end:
            raise ValueError("from must be before to")
        return self


class PauseMessage(StrictModel):
    """Hold delivery; the replay stays where it is."""

    type: Literal["pause"]


class ResumeMessage(StrictModel):
    """Continue a paused replay."""

    type: Literal["resume"]


class SeekMessage(StrictModel):
    """Jump to the first item committed at or after `time`."""

    type: Literal["seek"]
    time: UtcTime


class SpeedMessage(StrictModel):
    """Change the pace from now on."""

    type: Literal["speed"]
    speed: Speed


class PingMessage(StrictModel):
    """A keep-alive; answered with `pong`."""

    type: Literal["ping"]


ClientMessage = Annotated[
    StartMessage | PauseMessage | ResumeMessage | SeekMessage | SpeedMessage | PingMessage,
    Field(discriminator="type"),
]
_messages: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
TYPES = "start, pause, resume, seek, speed, ping"
SPEED_RULE = f'"max", or a number over 0 and at most {MAX_SPEED:g} (times real time)'


def parse_message(raw: str) -> ClientMessage | str:
    """The client's message, or an error text naming each bad field."""
    try:
        return _messages.validate_json(raw)
    except ValidationError as error:
        problems: dict[str, str] = {}
        for item in error.errors():
            if item["type"] in ("json_invalid", "dict_type", "model_attributes_type", "model_type"):
                return "messages are JSON objects"
            if item["type"] in ("union_tag_invalid", "union_tag_not_found"):
                return f"type: one of {TYPES}"
            # loc[0] is the message type the union tried; loc[1] the field (then union arms).
            field = str(item["loc"][1]) if len(item["loc"]) > 1 else "message"
            text = SPEED_RULE if field == "speed" else item["msg"]
            problems.setdefault(field, f"{field}: {text}")
        return "; ".join(problems.values())
