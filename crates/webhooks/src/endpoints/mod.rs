//! Notifications to tenants' own HTTP endpoints (`/v1/webhook-endpoints`), beside the AMQP
//! events: the drainer fans each event out to the tenant's endpoints (`fanout`), and the
//! delivery worker (`deliver`) posts them signed the Standard Webhooks way, at least once, with
//! exponential backoff and jitter, per-endpoint order per conversation, and a dead state after
//! `notify.max_attempts`. The claim and record statements are in `store`.

pub mod deliver;
pub mod fanout;
pub mod resolver;
pub mod store;
