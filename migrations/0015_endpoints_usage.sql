-- Issue 16, items 2 and 3: signed HTTP webhook notifications (per-tenant endpoints and their
-- deliveries) and the usage rollup behind `GET /v1/usage`.

-- A tenant's HTTP endpoints. The signing secret (`whsec_…`) is sealed with WAFLEET_SECRET_KEY
-- like the Meta tokens; after a rotation the previous one keeps signing beside the new one
-- until `previous_secret_until`, so a receiver can switch without losing deliveries.
CREATE TABLE webhook_endpoints (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url                    text NOT NULL,
    description            text NOT NULL DEFAULT '',
    -- Event types delivered (`status`, `inbound`, `optout`, `account`); empty = every type.
    event_types            text[] NOT NULL DEFAULT '{}',
    enabled                boolean NOT NULL DEFAULT true,
    secret_enc             bytea NOT NULL,
    previous_secret_enc    bytea,
    previous_secret_until  timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);

-- One event for one endpoint. Written by the events drainer in the transaction that takes
-- the event off `outbound_events`; sent by the delivery worker. `pending` rows are due at
-- `next_attempt_at` (also the lease of a claimed row: a worker that dies mid-request leaves
-- its rows to come due again, so delivery is at-least-once).
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    -- The `outbound_events` id the delivery was made from (0 for a test event): the order of
    -- the events, which deliveries with the same ordering key keep.
    event_id         bigint NOT NULL,
    event_type       text NOT NULL,
    -- Deliveries with the same key go to their endpoint one at a time, in id order: the
    -- conversation (`<phone number id>:<contact>`) of a message event, the contact of an
    -- opt-out; NULL (account events, tests) is not ordered. A dead delivery no longer holds
    -- back the ones after it.
    ordering_key     text,
    payload          jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_attempt_at  timestamptz,
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
-- The worker's claim: due pending rows, oldest first (partial, so delivered and dead rows
-- cost the claim nothing however many there are).
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
-- The ordering check: is an earlier delivery of the same key to the same endpoint pending?
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, ordering_key, event_id)
    WHERE state = 'pending';
-- `GET /v1/webhook-endpoints/{id}/deliveries[?state=]`, newest first.
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, state, id DESC);
CREATE INDEX webhook_deliveries_endpoint_all ON webhook_deliveries (endpoint_id, id DESC);

-- Priced messages per day, counted once per message when Meta first reports its pricing
-- (the status webhook's `pricing`): `GET /v1/usage` sums these rows for the tenant's days
-- instead of reading its messages. Days are UTC days of the status that carried the pricing.
CREATE TABLE usage_daily (
    tenant_id        uuid NOT NULL,
    day              date NOT NULL,
    phone_number_id  text NOT NULL,
    user_id          text,
    campaign_id      uuid,
    -- ISO 3166-1 alpha-2 of the recipient's number; NULL when the number has no country.
    country          text,
    -- Meta's `pricing.category` (`marketing`, `utility`, `authentication`, `service`…) and
    -- `pricing.type` (`regular`, `free_customer_service`, `free_entry_point`).
    category         text NOT NULL,
    pricing_type     text,
    messages         bigint NOT NULL DEFAULT 0,
    billable         bigint NOT NULL DEFAULT 0,
    -- A striped counter: each status transaction adds to one of 16 rows of its key, picked at
    -- random, so concurrent webhook batches of one busy sender rarely wait on each other's row
    -- lock until commit (one row per key made every batch of a tenant queue behind the last).
    -- Reads sum the stripes.
    slot             smallint NOT NULL DEFAULT 0,
    CONSTRAINT usage_daily_key UNIQUE NULLS NOT DISTINCT
        (tenant_id, day, phone_number_id, user_id, campaign_id, country, category, pricing_type,
         slot)
);
