"""A local HTTP server in data.binance.vision's layout, and daily zips built from the captures.

The server is a real HTTP server (http.server on loopback) serving a directory: a zip and its
`.zip.CHECKSUM` per day, 404 for a day that has no file, as Binance's own server answers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from tickmesh.collector.binance_csv import CsvKind
from tickmesh.collector.binance_vision import DailyFile

FUTURES_HEADER = "id,price,qty,quote_qty,time,is_buyer_maker"


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: Any) -> None:
        """Record the request line rather than print it."""
        self.requests.append(self.path)


@contextmanager
def vision_server(root: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve `root` on loopback; yield (base URL, paths requested so far)."""
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def publish_day(root: Path, file: DailyFile, csv_text: str, checksum: str | None = None) -> Path:
    """Write a day's zip and its CHECKSUM under `root` (a wrong `checksum` when given)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(file.member, csv_text)
    data = buffer.getvalue()
    target = root / file.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    digest = checksum if checksum is not None else hashlib.sha256(data).hexdigest()
    target.with_name(target.name + ".CHECKSUM").write_text(f"{digest}  {file.name}\n")
    return target


def capture_trade_rows(capture: Path, micros: bool) -> dict[dt.date, list[str]]:
    """A @trade capture as Binance trades CSV rows, by UTC day of the trade time."""
    days: dict[dt.date, list[str]] = {}
    with capture.open(encoding="utf-8") as handle:
        for line in handle:
            data = json.loads(line.partition(" ")[2])["data"]
            if data.get("X", "MARKET") != "MARKET":
                continue  # Binance's trade files hold market trades only
            when = data["T"] * 1000 if micros else data["T"]
            quote = Decimal(data["p"]) * Decimal(data["q"])
            maker = "true" if data["m"] else "false"
            row = f"{data['t']},{data['p']},{data['q']},{quote},{when},{maker}"
            if micros:
                row += ",True"  # spot files also carry is_best_match
            day = dt.datetime.fromtimestamp(data["T"] / 1000, dt.UTC).date()
            days.setdefault(day, []).append(row)
    return days


def agg_trade_rows(derived_csv: Path) -> dict[dt.date, list[str]]:
    """The derived aggTrades CSV's data rows, by UTC day of their transact time."""
    days: dict[dt.date, list[str]] = {}
    lines = derived_csv.read_text(encoding="utf-8").splitlines()
    for row in lines[1:]:
        day = dt.datetime.fromtimestamp(int(row.split(",")[5]) / 1000, dt.UTC).date()
        days.setdefault(day, []).append(row)
    return days


def spot_file(symbol: str, day: dt.date, kind: CsvKind = CsvKind.TRADES) -> DailyFile:
    """A spot daily file."""
    return DailyFile("spot", kind, symbol, day)


def usdm_file(symbol: str, day: dt.date) -> DailyFile:
    """A USD-M futures daily trades file."""
    return DailyFile("usdm", CsvKind.TRADES, symbol, day)
