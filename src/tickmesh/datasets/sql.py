"""The SQL of a dataset chunk: one series' next bars in [$4, $5) joined with their analytics rows.

Parameters: $1 exchange label, $2 symbol, $3 timeframe label, $4 start, $5 end (timestamptz).
A chunk is up to three COPYs of the same bars: the bar columns as text (CSV, with times written
"+00": the reader sets TimeZone UTC), the analytics columns as fixed-width binary
(binary.py), the feature rows' JSON as NDJSON text (parsed by pyarrow's JSON reader).

"latest" reads `candles`, `indicators`, `ml_features`. As first final reads, per bar, its
earliest version in `bar_versions` (revision 0) and the `indicator_versions` /
`feature_versions` row with the smallest version_id (the storage contract of issue 14).
"""

from __future__ import annotations

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
_SERIES = "exchange = $1 AND symbol = $2 AND timeframe = $3"
_SAME_BAR = (
    "{t}.exchange = b.exchange AND {t}.symbol = b.symbol "
    "AND {t}.timeframe = b.timeframe AND {t}.time = b.time"
)


def _bar_columns(schema: DatasetSchema) -> list[str]:
    return [f"b.{c}" for c in _BAR_COLUMNS] + (["b.committed_at"] if schema.as_of else [])


def _analytics_columns(schema: DatasetSchema) -> list[str]:
    columns = []
    if schema.indicators:
        columns += [f"i.{n}" for n in INDICATOR_NAMES]
        if schema.as_of:
            columns.append("i.committed_at")
    if schema.features is not None:
        columns.append("f.feature_version")
        if schema.as_of:
            columns.append("f.committed_at")
    return columns


def _joins(schema: DatasetSchema) -> list[str]:
    joins = []
    if schema.indicators:
        if schema.as_of:
            joins.append(
                "LEFT JOIN LATERAL (SELECT * FROM indicator_versions i WHERE "
                + _SAME_BAR.format(t="i")
                + " ORDER BY i.version_id LIMIT 1) i ON true"
            )
        else:
            joins.append("LEFT JOIN indicators i ON " + _SAME_BAR.format(t="i"))
    if schema.features is not None:
        if schema.as_of:
            joins.append(
                "LEFT JOIN LATERAL (SELECT * FROM feature_versions f WHERE "
                + _SAME_BAR.format(t="f")
                + " ORDER BY f.version_id LIMIT 1) f ON true"
            )
        else:
            joins.append("LEFT JOIN ml_features f ON " + _SAME_BAR.format(t="f"))
    return joins


def _series_bars(as_of: bool) -> str:
    """One series' bars in [$4, $5), in open-time order: current candles, or per bar its
    earliest stored version (revision 0, the first final).

    Candles stored before migration 0008 have one version each, of their revision then, and
    retention may collapse early versions: for those bars the earliest version kept is the
    earliest known one, so "smallest revision" rather than "revision = 0".
    """
    where = f"{_SERIES} AND time >= $4 AND time < $5"
    if as_of:
        return (
            f"SELECT DISTINCT ON (time) * FROM bar_versions WHERE {where} ORDER BY time, revision"
        )
    return f"SELECT * FROM candles WHERE {where} ORDER BY time"


def _chunk_bars(schema: DatasetSchema, chunk_rows: int) -> str:
    return f"({_series_bars(schema.as_of)} LIMIT {int(chunk_rows)}) b"


def bars_query(schema: DatasetSchema, chunk_rows: int) -> str:
    """The bar columns of one chunk: the first `chunk_rows` bars from $4 on, by open time.

    Its columns are schema.bar_fields(), for text COPY: PostgreSQL writes numerics as fast as
    text as in binary, and pyarrow parses exact decimals from text directly. The next chunk
    starts just after the last open time read (keyset paging), so empty stretches cost nothing.
    """
    return (
        f"SELECT {', '.join(_bar_columns(schema))} FROM {_chunk_bars(schema, chunk_rows)} "
        "ORDER BY b.time"
    )


def analytics_query(schema: DatasetSchema, chunk_rows: int) -> str | None:
    """The indicator and feature columns of the same bars as bars_query, in the same order.

    Its columns carry schema.analytics_fields() in their fixed-width binary forms
    (binary.sql_columns): floats cost far less to send in binary than as text.
    None when the dataset has neither part.
    """
    fields = schema.analytics_fields()
    if not fields:
        return None
    columns: list[str] = []
    for expression, field in zip(_analytics_columns(schema), fields, strict=True):
        columns += binary.sql_columns(expression, field)
    return " ".join(
        [
            f"SELECT {', '.join(columns)} FROM {_chunk_bars(schema, chunk_rows)}",
            *_joins(schema),
            "ORDER BY b.time",
        ]
    )


def features_query(schema: DatasetSchema, chunk_rows: int) -> str | None:
    """The feature rows' JSON of the same bars as bars_query, one line each ('{}' for none).

    For text COPY: its lines are NDJSON as they are (feature names are snake_case and values
    numbers, so COPY escapes nothing), which pyarrow's JSON reader parses on its own
    threads. That costs far less than unpacking the JSON into float8 columns in SQL.
    """
    if not schema.features:
        return None
    joins = _joins(DatasetSchema(as_of=schema.as_of, indicators=False, features=()))
    return " ".join(
        [
            f"SELECT coalesce(f.features, '{{}}'::jsonb) FROM {_chunk_bars(schema, chunk_rows)}",
            *joins,
            "ORDER BY b.time",
        ]
    )


def count_query(as_of: bool) -> str:
    """The number of bars of one series in [$4, $5): the progress total and the row limit."""
    return f"SELECT count(*) FROM ({_series_bars(as_of)}) s"


def feature_names_query(as_of: bool) -> str:
    """The feature names of one series in [$4, $5): the keys of its first and last feature row.

    Features need history, so a series' early rows lack some; its last row has every name of
    the current feature version and its first row every name of an older one.
    """
    table = "feature_versions" if as_of else "ml_features"
    where = f"{_SERIES} AND time >= $4 AND time < $5"
    return (
        "SELECT DISTINCT k FROM ("
        f"(SELECT features FROM {table} WHERE {where} ORDER BY time LIMIT 1) UNION ALL "
        f"(SELECT features FROM {table} WHERE {where} ORDER BY time DESC LIMIT 1)"
        ") s, jsonb_object_keys(s.features) AS k ORDER BY k"
    )
