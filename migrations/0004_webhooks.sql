-- Webhook bookkeeping for the fields other than `messages` (templates, senders, account,
-- user preferences) and for opt-outs: a durable key per item, so Meta's retries and the copies
-- every subscribed app receives change nothing, and the newest Meta time applied per subject,
-- so an older update that arrives late never overwrites a newer one.

CREATE TABLE webhook_receipts (
    tenant_id    uuid NOT NULL,
    -- <field>:<sha256 of the entry time and the change's value>
    key          text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

CREATE TABLE webhook_subjects (
    tenant_id  uuid NOT NULL,
    -- What an update is about, e.g. template_status:<name>:<language>, optout:<recipient>:all.
    subject    text NOT NULL,
    last_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, subject)
);
