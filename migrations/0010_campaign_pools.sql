-- Campaign sender pools: a campaign may send from several of the company's numbers. `senders`
-- lists the pool's phone number ids in the order given (for `"senders": "all"`, the company's
-- approved senders when the campaign was created). NULL for a campaign of one sender, which
-- keeps `sender_id` / `phone_number_id` only; those two columns always name the pool's first
-- number. Each campaign message carries the number it goes out from in its own
-- `messages.sender_id` / `phone_number_id`, so the feeder windows and rates each number apart.

ALTER TABLE campaigns ADD COLUMN senders text[];
