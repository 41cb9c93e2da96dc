-- Dispatcher policies (SPEC §4): the per-sender rate setting and what the cap's bookkeeping
-- needs to stay cheap.

-- An admin's rate for this sender in messages per second (NULL = the configured default,
-- `dispatch.sender_rate`). Meta allows 80 by default and up to 1,000 after its upgrade.
ALTER TABLE senders ADD COLUMN rate_mps integer CHECK (rate_mps BETWEEN 1 AND 1000);

-- Giving a cap slot back when a message fails checks whether another message to the same
-- recipient still holds it; policies read opt-outs and windows per recipient the same way.
CREATE INDEX messages_tenant_recipient ON messages (tenant_id, recipient) WHERE direction = 'out';
