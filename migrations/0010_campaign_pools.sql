-- Campaign sender pools: a campaign may send from several of the company's numbers. `senders`
-- lists the pool's phone number ids in the order given (for `"senders": "all"`, the company's
-- approved senders when the campaign was created). NULL for a campaign of one sender, which
-- keeps `sender_id` / `phone_number_id` only; those two columns always name the pool's first
-- number. Each campaign message carries the number it goes out from in its own
-- `messages.sender_id` / `phone_number_id`, so the feeder windows and rates each number apart.

ALTER TABLE campaigns ADD COLUMN senders text[];

-- A raised messaging limit releases the messages held for it (`deferred: messaging_limit`) at
-- once. The change that raises it also stamps `limit_raised_at`, so the deferred releaser can
-- catch a hold the dispatcher decided under the old limit but recorded just after the raise
-- (its `updated_at`, the dispatch batch's start, is then no later than the raise).
ALTER TABLE tenant_settings ADD COLUMN limit_raised_at timestamptz;
