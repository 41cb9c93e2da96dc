-- The portfolio messaging limit (SPEC §4): the distinct recipients of business-initiated
-- messages per tenant in the last 24 h. One row per recipient; a recipient counted more than
-- 24 h ago is free again and is re-counted (counted_at moves) by its next business-initiated
-- send. Reservations lock the tenant's settings row, so concurrent dispatchers never overshoot.
CREATE TABLE cap_recipients (
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    recipient   text NOT NULL,
    counted_at  timestamptz NOT NULL,
    -- The message that took the slot: if it ends `failed`, the slot is given back.
    message_id  uuid NOT NULL,
    -- Who took it: 'single' or 'bulk' (bulk may not use the share reserved for single sends).
    kind        text NOT NULL CHECK (kind IN ('single', 'bulk')),
    PRIMARY KEY (tenant_id, recipient)
);
CREATE INDEX cap_recipients_age ON cap_recipients (tenant_id, counted_at);
CREATE INDEX cap_recipients_message ON cap_recipients (message_id);
