-- Schema shared by several capabilities, defined once so they can be built side by side:
-- tenant settings (admin API writes, policies read, webhooks update Meta's view), sender and
-- template health from Meta, opt-outs and recipient holds, the settings audit trail, and the
-- outbox of notifications for upstream.

CREATE TABLE tenant_settings (
    tenant_id               uuid PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    -- ISO 3166-1 alpha-2; empty = worldwide.
    allowed_countries       text[] NOT NULL DEFAULT '{}',
    -- {"days": ["mon",…], "zone": "Europe/London", "start": "20:00", "end": "08:00"}; NULL = none.
    quiet_time              jsonb,
    default_sender_id       uuid REFERENCES senders(id) ON DELETE SET NULL,
    -- Portfolio messaging limit as Meta reports it (NULL = unknown, treated as 250; -1 = unlimited).
    meta_tier               integer,
    -- An admin's override of the tier (NULL = use Meta's).
    tier_override           integer,
    -- Share of the cap reserved for single (1:1) sends.
    bulk_reserve_percent    integer NOT NULL DEFAULT 10 CHECK (bulk_reserve_percent BETWEEN 0 AND 100),
    -- Keywords that opt a recipient out / back in (case-insensitive, whole message).
    optout_keywords         text[] NOT NULL DEFAULT ARRAY['STOP', 'UNSUBSCRIBE', 'STOPP', 'ARRET', 'ARRÊT', 'BAJA', 'PARAR', 'SAIR', 'CANCELAR', 'ABMELDEN'],
    optin_keywords          text[] NOT NULL DEFAULT ARRAY['START', 'UNSTOP', 'SUBSCRIBE', 'ALTA', 'VOLTAR'],
    -- Meta restricted business-initiated messaging for the account until then (account_update).
    account_restricted_until timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenant_settings (tenant_id) SELECT id FROM tenants;

-- Sender health as Meta reports it (webhooks and Graph syncs).
ALTER TABLE senders
    ADD COLUMN quality_rating text,
    ADD COLUMN throughput_mps integer,
    ADD COLUMN name_status    text,
    -- Sending paused by Meta signals (spam limit, quality) until then.
    ADD COLUMN paused_until   timestamptz;

ALTER TABLE templates
    ADD COLUMN quality_score text,
    ADD COLUMN paused_until  timestamptz;

-- Recipients who asked not to be messaged. scope 'marketing' (Meta's marketing stop, 131050)
-- blocks marketing templates; scope 'all' (a STOP keyword) blocks every template send.
CREATE TABLE opt_outs (
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    recipient   text NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('marketing', 'all')),
    source      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, recipient, scope)
);

-- Recipients Meta asked us not to message for a while (131049: wait 24 h).
CREATE TABLE recipient_holds (
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    recipient   text NOT NULL,
    until       timestamptz NOT NULL,
    reason      text NOT NULL,
    PRIMARY KEY (tenant_id, recipient)
);

-- Who changed which setting, when, from what to what.
CREATE TABLE settings_audit (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    actor       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    change      jsonb NOT NULL
);
CREATE INDEX settings_audit_tenant ON settings_audit (tenant_id, at DESC);

-- Transactional outbox of notifications for upstream (`<p>.events`): written in the same
-- transaction as the state change, published with confirms by a drainer, then marked.
CREATE TABLE outbound_events (
    id            bigserial PRIMARY KEY,
    tenant_id     uuid NOT NULL,
    routing_key   text NOT NULL,
    body          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbound_events_pending ON outbound_events (id) WHERE published_at IS NULL;
