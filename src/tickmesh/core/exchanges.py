"""Exchange names: the proto enum and the label stored in the database ("binance_spot", …)."""

from __future__ import annotations

from tickmesh.v2 import market_pb2

_PREFIX = "EXCHANGE_"

LABEL_BY_PROTO: dict[int, str] = {
    value.number: value.name.removeprefix(_PREFIX).lower()
    for value in market_pb2.DESCRIPTOR.enum_types_by_name["Exchange"].values
    if value.number != market_pb2.EXCHANGE_UNSPECIFIED
}
PROTO_BY_LABEL: dict[str, int] = {label: number for number, label in LABEL_BY_PROTO.items()}


def exchange_label(value: int) -> str:
    """The stored label of a proto Exchange value; ValueError for UNSPECIFIED or unknown."""
    try:
        return LABEL_BY_PROTO[value]
    except KeyError:
        raise ValueError(f"unknown exchange enum value {value}") from None


def exchange_proto(label: str) -> int:
    """The proto Exchange value of a stored label; ValueError naming the accepted labels."""
    try:
        return PROTO_BY_LABEL[label]
    except KeyError:
        accepted = ", ".join(PROTO_BY_LABEL)
        raise ValueError(f"unknown exchange {label!r}; expected one of {accepted}") from None
