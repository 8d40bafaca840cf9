-- The bar service's saved engine state as bytes (issue 15: a whole market's minute close).
--
-- Every instrument's head is rewritten at every minute close: 2,000 of them for a whole market.
-- As JSONB each ~1.9 kB head was parsed and, being over the 2 kB TOAST threshold once parsed,
-- compressed with pglz: the upserts took 150-370 ms of the close. The service now writes heads
-- and retained final rows as MessagePack (saved_state.py), ~1.2 kB a head, stored as it is.
-- The JSON already stored becomes its text, which the service still reads. The ALTERs rewrite
-- the tables once: 1,000,000 retained final rows took 5.4 s on a 2-core machine, so a whole
-- market's day (about 4 M) holds the bar service's start for about 20 s.
--
-- Half of each page is left free, so a head's update finds room on its own page and stays off
-- the index (a HOT update): the upserts of a close took 22 ms instead of 65 ms.
ALTER TABLE bar_engine_state ALTER COLUMN state TYPE BYTEA USING convert_to(state::text, 'UTF8');
ALTER TABLE bar_engine_state SET (fillfactor = 50);
ALTER TABLE bar_history_state ALTER COLUMN state TYPE BYTEA USING convert_to(state::text, 'UTF8');
ALTER TABLE bar_history_state SET (fillfactor = 50);
ALTER TABLE bar_engine_finals ALTER COLUMN bar TYPE BYTEA USING convert_to(bar::text, 'UTF8');
