-- Onboarding as the recruiting products do it (issue 14): Embedded Signup and its progress,
-- number registration and display-name review, sender removal, the Meta connection's status,
-- and the WhatsApp module switch.

-- The module switch: a tenant switched off for WhatsApp has its sends refused at intake
-- (`whatsapp_disabled`); its webhooks are still recorded.
ALTER TABLE tenants
    ADD COLUMN whatsapp_enabled    boolean NOT NULL DEFAULT true,
    ADD COLUMN whatsapp_changed_at timestamptz;

-- The connection as Meta last answered: `connected`, `token_invalid` (190, permission errors)
-- or `account_restricted` (131031, 368, …), since when, with Meta's code and message; `unknown`
-- until the first answer. Kept by the periodic check and after every Meta error that means the
-- token or account is unusable.
ALTER TABLE meta_connections
    -- NULL: the tenant uses the global Meta app (Embedded Signup through the partner's app),
    -- whose webhooks are signed with WAFLEET_META_APP_SECRET.
    ALTER COLUMN app_secret_enc DROP NOT NULL,
    ADD COLUMN status         text NOT NULL DEFAULT 'unknown'
        CHECK (status IN ('unknown', 'connected', 'token_invalid', 'account_restricted')),
    ADD COLUMN status_since   timestamptz,
    ADD COLUMN checked_at     timestamptz,
    ADD COLUMN status_code    bigint,
    ADD COLUMN status_message text;
-- The periodic check takes the connections checked longest ago (never checked first).
CREATE INDEX meta_connections_check_due ON meta_connections (checked_at NULLS FIRST);

-- One Embedded Signup per tenant (the latest): which session (the code's hash; the code itself
-- is single-use and never stored), and when each step was done, so a retry goes on from where
-- the last attempt stopped. `error` is the last failure: the step and Meta's code and message.
CREATE TABLE signups (
    tenant_id     uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    waba_id       text NOT NULL,
    code_sha256   bytea NOT NULL,
    exchanged_at  timestamptz,
    numbers_at    timestamptz,
    subscribed_at timestamptz,
    completed_at  timestamptz,
    error         jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Registration for Cloud API (`POST /{phone_number_id}/register` with a two-step PIN): numbers
-- known before this migration were sending, so they are `registered`. The PIN we set is sealed
-- like the tokens. A display name submitted to Meta waits in `new_display_name` with Meta's
-- review (`new_name_status`) until approved. A removed sender stays on record, its messages
-- keep it, but it no longer counts among the 20 nor holds its number (`status = 'removed'`).
ALTER TABLE senders
    ADD COLUMN registration       text NOT NULL DEFAULT 'registered'
        CHECK (registration IN ('registered', 'unregistered', 'deregistered')),
    ADD COLUMN registered_at      timestamptz,
    ADD COLUMN pin_enc            bytea,
    ADD COLUMN registration_error jsonb,
    ADD COLUMN new_display_name   text,
    ADD COLUMN new_name_status    text,
    ADD COLUMN removed_at         timestamptz;
DROP INDEX senders_live_phone_number_id;
CREATE UNIQUE INDEX senders_live_phone_number_id ON senders (phone_number_id)
    WHERE status NOT IN ('rejected', 'removed');

-- Messages held because their sender is not registered, per sender: registering the number
-- makes them due at once (the partial predicate matches that query exactly).
CREATE INDEX messages_unregistered_holds ON messages (tenant_id, phone_number_id)
    WHERE state = 'deferred' AND reason = 'sender_not_registered';
