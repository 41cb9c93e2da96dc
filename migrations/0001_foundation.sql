-- wafleet foundation schema: tenants, their Meta connection and senders, API keys,
-- messages (both directions) with their event trail, idempotency, webhook bookkeeping.
-- Every table that holds tenant data carries tenant_id, and every query filters on it.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One Meta connection per tenant. Secrets are sealed with WAFLEET_SECRET_KEY (AES-256-GCM,
-- nonce || ciphertext); the verify token is compared on the webhook handshake only.
CREATE TABLE meta_connections (
    tenant_id         uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    waba_id           text NOT NULL UNIQUE,
    access_token_enc  bytea NOT NULL,
    app_secret_enc    bytea NOT NULL,
    verify_token_enc  bytea NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE senders (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id   text NOT NULL,
    phone_e164        text NOT NULL,
    display_name      text NOT NULL DEFAULT '',
    friendly_name     text NOT NULL DEFAULT '',
    -- NULL = the company's sender; otherwise the upstream user who owns this number.
    owner_user_id     text,
    is_company_default boolean NOT NULL DEFAULT false,
    status            text NOT NULL DEFAULT 'approved',
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (phone_number_id)
);
CREATE INDEX senders_tenant ON senders (tenant_id);
CREATE UNIQUE INDEX senders_one_company_default ON senders (tenant_id) WHERE is_company_default;

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash    bytea NOT NULL UNIQUE,
    prefix      text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'sender', 'reader')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Templates as synced from Meta, with the tenant's merge-field bindings
-- (parameter position or name -> merge code such as KNOWNAS).
CREATE TABLE templates (
    tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name              text NOT NULL,
    language          text NOT NULL,
    category          text NOT NULL DEFAULT 'UTILITY',
    status            text NOT NULL DEFAULT 'APPROVED',
    parameter_format  text NOT NULL DEFAULT 'POSITIONAL',
    body_param_count  integer NOT NULL DEFAULT 0,
    -- Ordered list of merge codes for the body parameters, e.g. ["KNOWNAS","CONSULTANTUSERNAME"];
    -- for NAMED templates, a list of parameter names with their merge codes.
    bindings          jsonb NOT NULL DEFAULT '[]',
    components        jsonb NOT NULL DEFAULT '[]',
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name, language)
);

-- Messages in both directions. Outbound rows move through the lifecycle in SPEC §3;
-- inbound rows are 'received'.
CREATE TABLE messages (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    direction         text NOT NULL CHECK (direction IN ('out', 'in')),
    kind              text NOT NULL DEFAULT 'single' CHECK (kind IN ('single', 'bulk')),
    campaign_id       uuid,
    sender_id         uuid REFERENCES senders(id),
    phone_number_id   text,
    -- E.164 of the candidate/contact; NULL only for inbound users known by BSUID alone.
    recipient         text,
    recipient_user_id text,
    record_type       text,
    record_id         text,
    user_id           text,
    -- What was asked for (outbound) or received (inbound): the type-specific payload.
    content_type      text NOT NULL,
    content           jsonb NOT NULL,
    state             text NOT NULL,
    reason            text,
    not_before        timestamptz,
    not_after         timestamptz,
    wamid             text,
    wa_id             text,
    attempts          integer NOT NULL DEFAULT 0,
    claimed_at        timestamptz,
    -- Outbox: NULL until the publish to the dispatch shard was confirmed by the broker.
    published_at      timestamptz,
    status_at         timestamptz,
    pricing           jsonb,
    error             jsonb,
    trace_context     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX messages_tenant_wamid ON messages (tenant_id, wamid) WHERE wamid IS NOT NULL;
CREATE INDEX messages_record ON messages (tenant_id, record_type, record_id, created_at DESC, id DESC);
CREATE INDEX messages_outbox ON messages (created_at) WHERE published_at IS NULL AND state = 'accepted';
CREATE INDEX messages_conversation ON messages (tenant_id, phone_number_id, recipient, created_at DESC);

-- The event trail: every transition with time, reason and Meta's error if any.
CREATE TABLE message_events (
    id          bigserial PRIMARY KEY,
    message_id  uuid NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    tenant_id   uuid NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    state       text NOT NULL,
    reason      text,
    detail      jsonb
);
CREATE INDEX message_events_message ON message_events (message_id, id);

CREATE TABLE idempotency_keys (
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key             text NOT NULL,
    request_hash    bytea NOT NULL,
    response_status smallint NOT NULL,
    response_body   jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- Durable dedupe of status webhooks: Meta retries, and every subscribed app gets a copy.
CREATE TABLE status_receipts (
    tenant_id   uuid NOT NULL,
    wamid       text NOT NULL,
    status      text NOT NULL,
    at          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, wamid, status)
);

-- Statuses whose wamid (and callback data) matched no message yet: applied once the send is recorded.
CREATE TABLE parked_statuses (
    tenant_id   uuid NOT NULL,
    wamid       text NOT NULL,
    status      text NOT NULL,
    payload     jsonb NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, wamid, status)
);

-- The 24 h customer service window per (sender, recipient), from inbound messages.
CREATE TABLE service_windows (
    tenant_id        uuid NOT NULL,
    phone_number_id  text NOT NULL,
    recipient        text NOT NULL,
    last_inbound_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, phone_number_id, recipient)
);

-- Webhook payloads we could authenticate but not understand: kept raw for inspection.
CREATE TABLE dead_webhooks (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid,
    received_at  timestamptz NOT NULL DEFAULT now(),
    reason       text NOT NULL,
    body         bytea NOT NULL
);
