"""Datasets for research: bars, indicators and features of a range, joined per bar, as Arrow.

One request (instruments, timeframes, a time range, "latest" or as first final) becomes a
stream of Arrow record batches of bounded size, read with `COPY ... TO STDOUT`: bars as
text parsed by pyarrow, indicators and features as binary decoded with numpy. `tickmesh export` writes them to Parquet; the gateway streams them as Arrow IPC or
CSV. The columns are documented in the README ("Datasets").
"""

from tickmesh.datasets.reader import DatasetReader, open_dataset
from tickmesh.datasets.request import DatasetRequest, DatasetRequestError, parse_request
from tickmesh.datasets.schema import DatasetSchema

__all__ = [
    "DatasetReader",
    "DatasetRequest",
    "DatasetRequestError",
    "DatasetSchema",
    "open_dataset",
    "parse_request",
]
