"""How a query names an instrument in the tables keyed by its integer id (candles, bar_versions).

Migration 0011 keys both by `instruments.id`; the bar service assigns an id the first time it
stores a bar of an instrument. Readers, the bar service's and the dataset export's alike,
name the instrument by its exchange label and symbol and let PostgreSQL look the id up.
"""

from __future__ import annotations

# $1 exchange label, $2 symbol: the instrument's id, or NULL (no bar of it was ever stored),
# for `instrument_id = ...` in a range query on a primary key.
INSTRUMENT_ID_OF = "(SELECT id FROM instruments WHERE exchange = $1 AND symbol = $2)"
