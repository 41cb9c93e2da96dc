-- Messages held for the messaging limit, per tenant: a raised limit releases them at once, and
-- for a while after a raise the releaser sweeps for holds decided under the old limit. Without
-- this index both read every message of the tenant (the partial predicate matches those
-- queries exactly, so it is used whatever the table's statistics say).
CREATE INDEX messages_limit_holds ON messages (tenant_id)
    WHERE state = 'deferred' AND reason = 'messaging_limit';
