-- Tenant administration: senders go through OTP verification and a rejected sender stays on
-- record (final) while the same number may be added again as a new sender, so a phone number id
-- is unique only among the senders that are not rejected.

ALTER TABLE senders DROP CONSTRAINT senders_phone_number_id_key;
CREATE UNIQUE INDEX senders_live_phone_number_id ON senders (phone_number_id) WHERE status <> 'rejected';

ALTER TABLE senders
    -- Wrong OTP codes entered since the last code was requested; too many reject the sender.
    ADD COLUMN verify_failures   integer NOT NULL DEFAULT 0,
    -- SMS or VOICE, and when the last code was requested.
    ADD COLUMN code_method       text,
    ADD COLUMN code_requested_at timestamptz,
    ADD COLUMN synced_at         timestamptz;

-- Who holds each API key (a label), so a list of keys means something to an admin.
ALTER TABLE api_keys ADD COLUMN label text NOT NULL DEFAULT '';
