"""The whole-market bench's WebSocket clients: one per instrument, noting what each receives when.

`python -m bench.market_clients BASE_URL TOKEN CONCURRENCY SECONDS INSTRUMENT...` connects one
client per instrument (`/ws/{instrument}`, subscribed to 1m) as bare asyncio protocols
(bench/gateway_clients.py), prints `{"connected": n}`, and on a `stop` line on stdin prints the
receipts, each stamped with the wall clock (ms) it arrived at, so the bench can set them
against exchange times:
- `forming`: [instrument index, bar open time (s), trade count, received];
- `final`: [instrument index, bar open time (s), revision, received], every version;
- `indicators`: [instrument index, bar open time (s), received].
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec

from bench.gateway_clients import (
    WsClient,
    answer,
    connect_clients,
    until_stopped_then_close,
    upgrade_request,
)

Receipt = list[float]
_decoder = msgspec.json.Decoder()


class _MarketClient(WsClient):
    """Notes each 1m forming bar, final bar version and indicator row of one instrument."""

    def __init__(self, request: bytes, index: int, receipts: dict[str, list[Receipt]]) -> None:
        super().__init__(request)
        self.index = index
        self.receipts = receipts

    def received(self, payload: bytes) -> None:
        received_ms = time.time() * 1000.0
        message: dict[str, Any] = _decoder.decode(payload)
        if message.get("timeframe") != "1m":
            return
        kind = message.get("type")
        if kind == "bars":
            for bar in message["bars"]:
                if not bar["final"]:
                    self.receipts["forming"].append(
                        [self.index, bar["time"], bar["trade_count"], received_ms]
                    )
                else:
                    self.receipts["final"].append(
                        [self.index, bar["time"], bar["revision"], received_ms]
                    )
        elif kind == "indicators":
            row = message["indicators"]
            self.receipts["indicators"].append([self.index, row["time"], received_ms])


async def market_clients(
    base_url: str, token: str, concurrency: int, seconds: float, instruments: list[str]
) -> None:
    """Connect a client per instrument, report how many, then the receipts once told to stop."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    receipts: dict[str, list[Receipt]] = {"forming": [], "final": [], "indicators": []}

    def factory(index: int, instrument: str) -> _MarketClient:
        request = upgrade_request(host, port, f"/ws/{instrument}", token)
        return _MarketClient(request, index, receipts)

    factories = [
        (lambda index=index, instrument=instrument: factory(index, instrument))
        for index, instrument in enumerate(instruments)
    ]
    clients = await connect_clients(base_url, factories, concurrency, seconds)
    answer({"connected": len(clients)})
    await until_stopped_then_close(clients)
    answer({"receipts": receipts})


def main() -> None:
    """Run the clients named on the command line."""
    base_url, token, concurrency, seconds, *instruments = sys.argv[1:]
    asyncio.run(market_clients(base_url, token, int(concurrency), float(seconds), instruments))


if __name__ == "__main__":
    main()
