-- One index for a contact's messages, in place of two. `messages_conversation` (tenant, number,
-- recipient, created_at) and `messages_tenant_recipient` (tenant, recipient; outbound only)
-- served the same lookups: a recipient's messages within a tenant (cap release, the record an
-- inbound reply belongs to), optionally from one number (sticky campaign senders). Every
-- lifecycle step rewrites a message row with an entry in each index, so one index fewer is one
-- B-tree insert fewer per state change (about six per message). With the recipient second, a
-- lookup by (tenant, recipient) and one by (tenant, recipient, number) both use it; nothing
-- looks up a tenant's number without a recipient here (the feeder has its own bulk indexes).
-- Built without CONCURRENTLY (migrations run in a transaction): on a large table, run it in a
-- quiet hour.
CREATE INDEX messages_contact ON messages (tenant_id, recipient, phone_number_id, created_at DESC);
DROP INDEX messages_conversation;
DROP INDEX messages_tenant_recipient;
