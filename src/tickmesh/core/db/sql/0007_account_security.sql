-- Accounts hardening (issue 13, item 6 and 10).
--
-- Usernames are unique whatever their case: "Admin" beside "admin" let anyone pose as the
-- administrator in the user list, and a bootstrap admin could not tell the two apart.
-- Existing case-duplicates cannot all keep their name. The oldest account (lowest id) keeps
-- it; each later one is renamed to "<name>~<id>" (cut so the whole fits in 64 characters).
-- "~" is outside the sign-up pattern, so a renamed name can never be taken by a registration;
-- an admin sees the new names in GET /api/v1/users and tells their owners. Their refresh
-- tokens are revoked so every session of a renamed account starts over under its new name.
WITH ranked AS (
    SELECT id, username,
           row_number() OVER (PARTITION BY lower(username) ORDER BY id) AS rank
    FROM users
),
renamed AS (
    UPDATE users u
    SET username = left(r.username, 63 - length(u.id::text)) || '~' || u.id
    FROM ranked r
    WHERE u.id = r.id AND r.rank > 1
    RETURNING u.id
)
UPDATE refresh_tokens SET revoked_at = now()
WHERE user_id IN (SELECT id FROM renamed) AND revoked_at IS NULL;

CREATE UNIQUE INDEX users_username_lower ON users (lower(username));

-- Bumped whenever every session of the user must end (password change, bootstrap reset):
-- access tokens carry the generation they were issued under and stop working once it moves.
ALTER TABLE users ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0;
