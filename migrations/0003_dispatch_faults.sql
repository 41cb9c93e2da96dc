-- Talking to Meta under faults: circuit breakers shared by every dispatcher process, dead
-- letters an operator can list and redrive, and the index the deferred releaser scans.
--
-- Deferred rows come in two kinds, told apart by `reason`:
--   'retry'           waiting in a retry tier queue (`<p>.retry.<tier>`); the broker brings it back.
--   anything else     held in the database only (recipient_hold, circuit_*, retry_after,
--                     redrive, and other policies' reasons); the dispatcher's releaser
--                     republishes it at not_before (NULL = never by itself).

-- One row per breaker: scope 'sender' (key = phone_number_id), 'template' (key = name:language)
-- or 'account' (key = ''). Closed breakers are deleted, so a row means open or half-open.
CREATE TABLE circuits (
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    scope        text NOT NULL CHECK (scope IN ('sender', 'template', 'account')),
    key          text NOT NULL,
    -- Meta's error code that opened it, and its raw error.
    code         bigint,
    error        jsonb,
    opened_at    timestamptz NOT NULL,
    -- Open until then; afterwards half-open: one probe at a time may pass.
    until        timestamptz NOT NULL,
    -- When the current half-open probe was let through (NULL = none in flight).
    probe_at     timestamptz,
    PRIMARY KEY (tenant_id, scope, key)
);

-- Messages that gave up (retries exhausted or an unknown error) and went to `<p>.dead`.
ALTER TABLE messages ADD COLUMN dead_lettered_at timestamptz;
CREATE INDEX messages_dead ON messages (tenant_id, dead_lettered_at DESC) WHERE dead_lettered_at IS NOT NULL;

-- What the deferred releaser scans: due holds only (retry waits are the broker's business).
CREATE INDEX messages_holds_due ON messages (not_before) WHERE state = 'deferred' AND reason IS DISTINCT FROM 'retry';
