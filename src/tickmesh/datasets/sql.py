"""The SQL of a dataset chunk: one series' bars, indicators and feature rows in [$4, $5).

Parameters: $1 exchange label, $2 symbol, $3 timeframe label, $4 start, $5 end (timestamptz).
A chunk is the bars between two of the series' chunk bounds (bounds_query), so each part is
a range scan of its own table in primary-key order: no join, no sort. The reader lines the
parts up by open time (align.py); a bar without an indicator or feature row gets nulls.
The parts go as up to three COPYs: the bar columns as text (CSV, with times written "+00": the
reader sets TimeZone UTC), the indicators as fixed-width binary (binary.py), the feature rows
as fixed-width fields and their packed values (packed_features.py).

"latest" reads `candles`, `indicators`, `ml_features`. As first final reads, per bar, its
earliest version in `bar_versions` (revision 0) and the `indicator_versions` /
`feature_versions` row with the smallest version_id (the storage contract of issue 14).
"""

from __future__ import annotations

from tickmesh.core.db.instrument_keys import INSTRUMENT_ID_OF
from tickmesh.core.indicator_names import INDICATOR_NAMES
from tickmesh.datasets import binary
from tickmesh.datasets.schema import DatasetSchema

_BAR_COLUMNS = (
    "time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "trade_count",
    "vwap",
    "revision",
)
_TIME_RANGE = "timeframe = $3 AND time >= $4 AND time < $5"
_RANGE = f"exchange = $1 AND symbol = $2 AND {_TIME_RANGE}"
# candles and bar_versions are keyed by the instrument's id (0011_candle_instrument_ids.sql).
_BAR_RANGE = f"instrument_id = {INSTRUMENT_ID_OF} AND {_TIME_RANGE}"


def _first_versions(table: str, order: str, columns: str, where: str = _RANGE) -> str:
    """Per bar of the range, the row of `table` first in `order` (its primary key's order)."""
    return f"SELECT DISTINCT ON (time) {columns} FROM {table} WHERE {where} ORDER BY time, {order}"


def _series_bars(as_of: bool, columns: str = "*") -> str:
    """One series' bars in [$4, $5), in open-time order: current candles, or per bar its
    earliest stored version (revision 0, the first final).

    Candles stored before migration 0008 have one version each, of their revision then, and
    retention may collapse early versions: for those bars the earliest version kept is the
    earliest known one, so "smallest revision" rather than "revision = 0".
    """
    if as_of:
        return _first_versions("bar_versions", "revision", columns, _BAR_RANGE)
    return f"SELECT {columns} FROM candles WHERE {_BAR_RANGE} ORDER BY time"


def bounds_query(as_of: bool, chunk_rows: int) -> str:
    """The open times of the 1st, (chunk_rows+1)th, ... bar of one series in [$4, $5).

    Chunk k is [bound k, bound k+1) (the last one ends at $5): every part of a chunk is then a
    range of its own table, and chunks can be read in any order and at once.
    """
    return (
        f"SELECT time FROM (SELECT time, row_number() OVER (ORDER BY time) - 1 AS n "
        f"FROM ({_series_bars(as_of, 'time')}) s) r WHERE n % {int(chunk_rows)} = 0 ORDER BY time"
    )


def bars_query(schema: DatasetSchema) -> str:
    """The bar columns of the range, schema.bar_fields() in order, for text COPY.

    PostgreSQL writes numerics about as fast as text as in binary, and pyarrow parses exact
    decimals from text directly.
    """
    columns = [*_BAR_COLUMNS, *(("committed_at",) if schema.as_of else ())]
    return _series_bars(schema.as_of, ", ".join(columns))


def indicators_query(schema: DatasetSchema) -> str | None:
    """The open time and indicator columns of the range's indicator rows (one per bar at
    most), in their fixed-width binary forms (binary.sql_columns); None without indicators.
    """
    fields = schema.indicator_fields()
    if not fields:
        return None
    expressions = [*INDICATOR_NAMES, *(("committed_at",) if schema.as_of else ())]
    columns = ["time"]
    for expression, field in zip(expressions, fields, strict=True):
        columns += binary.sql_columns(expression, field)
    if schema.as_of:
        return _first_versions("indicator_versions", "version_id", ", ".join(columns))
    return f"SELECT {', '.join(columns)} FROM indicators WHERE {_RANGE} ORDER BY time"


def features_query(schema: DatasetSchema) -> str | None:
    """The open time, version (as first final also the commit time), layout id and packed
    values of the range's feature rows (one per bar at most); None without features.

    The values go as stored (bytea of float8, migration 0012) and packed_features.py splits
    them into columns: unpacking the JSON instead cost the server about 15 us a row, most of
    an export's time.
    """
    if schema.features is None:
        return None
    expressions = ["feature_version", *(("committed_at",) if schema.as_of else ())]
    columns = ["time"]
    for expression, field in zip(expressions, schema.feature_row_fields(), strict=True):
        columns += binary.sql_columns(expression, field)
    columns += ["feature_layout", "feature_values"]
    if schema.as_of:
        return _first_versions("feature_versions", "version_id", ", ".join(columns))
    return f"SELECT {', '.join(columns)} FROM ml_features WHERE {_RANGE} ORDER BY time"


def count_query(as_of: bool) -> str:
    """The number of bars of one series in [$4, $5): the progress total and the row limit."""
    return f"SELECT count(*) FROM ({_series_bars(as_of, 'time')}) s"


def feature_names_query(as_of: bool) -> str:
    """The feature names of one series in [$4, $5): the keys of its first and last feature row.

    Features need history, so a series' early rows lack some; its last row has every name of
    the current feature version and its first row every name of an older one.
    """
    table = "feature_versions" if as_of else "ml_features"
    return (
        "SELECT DISTINCT k FROM ("
        f"(SELECT features FROM {table} WHERE {_RANGE} ORDER BY time LIMIT 1) UNION ALL "
        f"(SELECT features FROM {table} WHERE {_RANGE} ORDER BY time DESC LIMIT 1)"
        ") s, jsonb_object_keys(s.features) AS k ORDER BY k"
    )
