-- Bulk campaigns (SPEC §3 principle 5): a campaign's messages wait in PostgreSQL, state
-- `queued` and unpublished (published_at NULL), until the dispatcher's feeder releases them to
-- their dispatch shard in small windows per sender. A paused campaign's waiting messages are
-- `deferred` with reason `campaign_paused` and no not_before (nothing releases them but resume).

CREATE TABLE campaigns (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name               text NOT NULL,
    template_name      text NOT NULL,
    template_language  text NOT NULL,
    sender_id          uuid NOT NULL REFERENCES senders(id),
    phone_number_id    text NOT NULL,
    user_id            text,
    -- active → paused ⇄ active; active|paused → cancelled. "completed" is derived (nothing left).
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'cancelled')),
    not_after          timestamptz,
    -- Recipients as given, and what became of them at intake.
    recipients_given   integer NOT NULL DEFAULT 0,
    accepted           integer NOT NULL DEFAULT 0,
    rejected           integer NOT NULL DEFAULT 0,
    duplicates         integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, created_at DESC, id DESC);

-- Recipients refused at intake, listable per campaign: the position in the list, what was
-- given, and the reason (the same codes as POST /v1/messages).
CREATE TABLE campaign_rejections (
    campaign_id  uuid NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    tenant_id    uuid NOT NULL,
    position     integer NOT NULL,
    recipient    text,
    record_type  text,
    record_id    text,
    code         text NOT NULL,
    field        text,
    detail       text NOT NULL,
    PRIMARY KEY (campaign_id, position)
);

-- A recipient is messaged once per campaign (a duplicate line or a producer's repeat is dropped);
-- also the index campaign counts read.
CREATE UNIQUE INDEX messages_campaign_recipient ON messages (campaign_id, recipient)
    WHERE campaign_id IS NOT NULL AND recipient IS NOT NULL;

-- What the feeder releases, per sender, oldest first (ids are time-ordered UUIDv7).
CREATE INDEX messages_bulk_waiting ON messages (phone_number_id, id)
    WHERE kind = 'bulk' AND state = 'queued' AND published_at IS NULL;
-- The feeder's window: bulk released to a shard and not yet settled by the dispatcher.
CREATE INDEX messages_bulk_in_flight ON messages (phone_number_id)
    WHERE kind = 'bulk' AND state IN ('queued', 'dispatching') AND published_at IS NOT NULL;
-- Held bulk past its not_after ends `expired` without reaching a shard.
CREATE INDEX messages_bulk_expiry ON messages (not_after)
    WHERE kind = 'bulk' AND state IN ('queued', 'deferred') AND not_after IS NOT NULL;
