-- Feature values packed beside their JSON (issue 14: export at a million rows a second).
--
-- A feature row's JSONB is what the APIs read, but unpacking it is most of an export's cost:
-- PostgreSQL parses a row's ~90 values at about 15 us a row, whether the export asks for them
-- as JSON or as float8 columns. So each row of `ml_features` and `feature_versions` also holds
-- its values as one bytea of big-endian float8 (`feature_values`, NaN for a missing or null
-- value) in the order of a name list (`feature_layout`, an id in `feature_layouts`). A reader
-- receives the bytes as they are stored and numpy splits them into columns.
--
-- The analytics service writes both columns itself (a layout per feature version, cached).
-- Any other writer (an older analytics, a script, a test) may leave them out: the triggers
-- below derive them from `features` then, so the pair always says what the JSON says. An
-- update that changes `features` but not `feature_values` derives them again.

CREATE TABLE feature_layouts (
    id     SERIAL PRIMARY KEY,
    names  TEXT[] NOT NULL UNIQUE
);

-- The id of a name list, assigned on first use. Looked up first: an upsert per row would
-- rewrite the layout's row every time. DO UPDATE so a list that a concurrent transaction has
-- just added comes back too.
CREATE FUNCTION tickmesh_feature_layout(layout_names TEXT[]) RETURNS INTEGER
LANGUAGE plpgsql AS $$
DECLARE
    layout INTEGER;
BEGIN
    SELECT id INTO layout FROM feature_layouts WHERE names = layout_names;
    IF layout IS NULL THEN
        INSERT INTO feature_layouts (names) VALUES (layout_names)
        ON CONFLICT (names) DO UPDATE SET names = EXCLUDED.names
        RETURNING id INTO layout;
    END IF;
    RETURN layout;
END
$$;

-- A row's names and their values packed, in one pass over its JSON. The order is the JSONB's
-- own key order (shorter names first, then bytewise), the same for every row of one name set.
CREATE FUNCTION tickmesh_packed_features(features JSONB, OUT names TEXT[], OUT packed BYTEA)
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(key), '{}'),
           coalesce(string_agg(float8send(coalesce((value #>> '{}')::float8, 'NaN')), ''::bytea),
                    ''::bytea)
    FROM jsonb_each(features)
$$;

CREATE FUNCTION tickmesh_pack_features() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
DECLARE
    row_names TEXT[];
    row_packed BYTEA;
BEGIN
    SELECT names, packed INTO row_names, row_packed FROM tickmesh_packed_features(NEW.features);
    NEW.feature_layout := tickmesh_feature_layout(row_names);
    NEW.feature_values := row_packed;
    RETURN NEW;
END
$$;

ALTER TABLE ml_features ADD COLUMN feature_layout INTEGER, ADD COLUMN feature_values BYTEA;
ALTER TABLE feature_versions ADD COLUMN feature_layout INTEGER, ADD COLUMN feature_values BYTEA;

-- Rows stored before: one layout per distinct name set, then every row packed (about 70 us a
-- row here; the JSON is read twice, once for the layouts and once for the values).
INSERT INTO feature_layouts (names)
SELECT DISTINCT (SELECT coalesce(array_agg(k), '{}') FROM jsonb_object_keys(features) AS k) FROM ml_features
UNION
SELECT DISTINCT (SELECT coalesce(array_agg(k), '{}') FROM jsonb_object_keys(features) AS k) FROM feature_versions
ORDER BY 1;

UPDATE ml_features f SET (feature_layout, feature_values) = (
    SELECT (SELECT id FROM feature_layouts l WHERE l.names = p.names), p.packed
    FROM tickmesh_packed_features(f.features) AS p);
UPDATE feature_versions f SET (feature_layout, feature_values) = (
    SELECT (SELECT id FROM feature_layouts l WHERE l.names = p.names), p.packed
    FROM tickmesh_packed_features(f.features) AS p);

-- NOT NULL holds for writers that leave them out too: a BEFORE trigger fills them first.
ALTER TABLE ml_features ALTER COLUMN feature_layout SET NOT NULL, ALTER COLUMN feature_values SET NOT NULL;
ALTER TABLE feature_versions ALTER COLUMN feature_layout SET NOT NULL, ALTER COLUMN feature_values SET NOT NULL;

CREATE TRIGGER ml_features_pack_insert BEFORE INSERT ON ml_features
    FOR EACH ROW WHEN (NEW.feature_values IS NULL OR NEW.feature_layout IS NULL)
    EXECUTE FUNCTION tickmesh_pack_features();
CREATE TRIGGER ml_features_pack_update BEFORE UPDATE ON ml_features
    FOR EACH ROW WHEN (NEW.feature_values IS NULL OR NEW.feature_layout IS NULL
        OR (NEW.features IS DISTINCT FROM OLD.features
            AND NEW.feature_values IS NOT DISTINCT FROM OLD.feature_values
            AND NEW.feature_layout IS NOT DISTINCT FROM OLD.feature_layout))
    EXECUTE FUNCTION tickmesh_pack_features();
CREATE TRIGGER feature_versions_pack_insert BEFORE INSERT ON feature_versions
    FOR EACH ROW WHEN (NEW.feature_values IS NULL OR NEW.feature_layout IS NULL)
    EXECUTE FUNCTION tickmesh_pack_features();
