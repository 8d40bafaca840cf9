"""What the ingest stream's two ends agree on beyond the proto messages."""

from __future__ import annotations

# Trailing metadata of a Publish call that ended on a rejected batch: that batch's sequence.
REJECTED_SEQUENCE_KEY = "tickmesh-rejected-sequence"
