-- Conversations for the ATS screens, consent and data protection (issue 16 items 1 and 4).

-- A conversation is (tenant, sender number, contact): one WhatsApp chat. Its id is a pure
-- function of those three, so every statement that writes a message can name its conversation
-- without reading anything back (an `INSERT … ON CONFLICT DO NOTHING` returns no row for a
-- conversation that already exists), the same id comes out of every service and of this
-- migration's backfill, and a message row needs no new column (or index) to find it.
-- STRICT: a message without a number (a refusal at intake, a user known by BSUID alone) has no
-- conversation.
CREATE FUNCTION conversation_id(tenant uuid, phone_number_id text, contact text) RETURNS uuid
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT md5(tenant::text || '/' || phone_number_id || '/' || contact)::uuid $$;

-- The conversations that exist, so an id given out can be looked up again
-- (`GET /v1/conversations/{id}/messages`). Written where messages are written (the intake group
-- commit, a campaign's transaction, inbound webhooks), one multi-row statement per batch; a
-- conversation that exists already costs one index probe and no write.
CREATE TABLE conversations (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_number_id text NOT NULL,
    -- The candidate's or contact's number (E.164).
    contact         text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (id = conversation_id(tenant_id, phone_number_id, contact))
);
-- Erasure removes a number's conversations.
CREATE INDEX conversations_contact ON conversations (tenant_id, contact);

-- Every conversation of the messages already stored (one pass over messages; on a large table,
-- run the migration in a quiet hour).
INSERT INTO conversations (id, tenant_id, phone_number_id, contact)
SELECT DISTINCT conversation_id(tenant_id, phone_number_id, recipient), tenant_id, phone_number_id, recipient
FROM messages
WHERE phone_number_id IS NOT NULL AND recipient IS NOT NULL;

-- Nullable columns without a default: no table rewrite.
ALTER TABLE messages
    -- Inbound only: when the company marked it read (`POST /v1/conversations/{id}/read`). The
    -- unread count of a conversation is its inbound messages with no `read_at`.
    ADD COLUMN read_at   timestamptz,
    -- When the content and the contact's number were anonymised (erasure or retention); the
    -- row stays for counts and billing (direction, type, state, pricing, times).
    ADD COLUMN erased_at timestamptz;

-- Sticky sender: the number a contact last wrote to, looked up by (tenant, contact). The
-- window's time is not in the index, so moving it keeps the update HOT.
CREATE INDEX service_windows_contact ON service_windows (tenant_id, recipient);

-- Why an opt-out was added by hand (`POST /v1/opt-outs`).
ALTER TABLE opt_outs ADD COLUMN reason text;

-- Who changed consent or erased a person's data, when, and what. `recipient` is the number
-- concerned (opt-outs), cleared when that number is erased; an erasure names the record only.
CREATE TABLE consent_audit (
    id           bigserial PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT now(),
    -- The API key that made the change (its id, and `apikey:<prefix>` with its label).
    api_key_id   uuid,
    actor        text NOT NULL,
    -- opt_out_added | opt_out_removed | record_erased
    action       text NOT NULL,
    recipient    text,
    record_type  text,
    record_id    text,
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX consent_audit_tenant ON consent_audit (tenant_id, id DESC);
CREATE INDEX consent_audit_recipient ON consent_audit (tenant_id, recipient) WHERE recipient IS NOT NULL;

-- Erasure finds a record's refused campaign lines, and a tenant's raw webhooks, by index.
CREATE INDEX campaign_rejections_record ON campaign_rejections (tenant_id, record_type, record_id)
    WHERE record_id IS NOT NULL;
CREATE INDEX dead_webhooks_tenant ON dead_webhooks (tenant_id, id);

-- The retention sweeper's progress: messages are swept in id order (UUIDv7, time-ordered, so
-- the primary key is the index), and `swept_through` is the last id it looked at.
CREATE TABLE retention_sweeps (
    name          text PRIMARY KEY,
    swept_through uuid NOT NULL
);
