-- Webhook and e-mail firings are sent from alert_events, not from the memory of the replica
-- that judged them: a gateway killed between recording a firing and sending it leaves the
-- delivery pending, and any replica sends it (claims by row lock, a lease for the send).
-- delivery: 'none' (WebSocket firings, and those recorded before this migration),
-- 'pending', 'delivered', or 'failed' (every attempt failed, or the target was refused).

ALTER TABLE alert_events ADD COLUMN delivery TEXT NOT NULL DEFAULT 'none'
    CHECK (delivery IN ('none', 'pending', 'delivered', 'failed'));
ALTER TABLE alert_events ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alert_events ADD COLUMN next_attempt_at TIMESTAMPTZ;
CREATE INDEX alert_events_pending ON alert_events (next_attempt_at) WHERE delivery = 'pending';
