//! Every metric the fleet exports, named in one place (dashboards, alert rules and runbooks
//! under `deploy/` use these names), with their help texts and the helpers that record them.
//!
//! Label values are bounded: states, reason codes, outcomes, queue roles (the queue name without
//! the `<p>.` prefix), tenant ids and sender phone number ids (Meta's ids, never phone numbers).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use std::{sync::Once, time::Duration};

/// Counter `{state, reason}`: messages entering a state (`accepted`, `rejected`, `sent`,
/// `deferred`, `failed`, `expired`, and webhook statuses `delivered`, `read`, …).
pub const MESSAGES: &str = "wafleet_messages_total";
/// Counter `{channel, code}`: send requests refused at intake (HTTP 4xx or `<p>.intake.rejected`).
pub const INTAKE_REJECTED: &str = "wafleet_intake_rejected_total";
/// Histogram `{outcome}` (`ok`, `error`): Graph API call latency.
pub const GRAPH_DURATION: &str = "wafleet_graph_duration_seconds";
/// Counter `{tier}`: dispatch messages sent to a retry tier queue.
pub const RETRIES: &str = "wafleet_dispatch_retries_total";
/// Counter: dispatch messages that gave up and went to `<p>.dead`.
pub const DEAD_LETTERS: &str = "wafleet_dispatch_dead_letters_total";
/// Gauge `{scope}`: circuit breakers open or half-open right now, read from the database by
/// every dispatcher (breakers are shared across processes, so a per-process gauge would lie).
pub const CIRCUITS_OPEN: &str = "wafleet_circuits_open";
/// Counter `{scope}`: circuit breakers opened (an error log line goes with each).
pub const CIRCUIT_OPENED: &str = "wafleet_circuit_opened_total";
/// Counter `{scope}`: circuit breakers closed by a successful probe.
pub const CIRCUIT_CLOSED: &str = "wafleet_circuit_closed_total";
/// Gauge `{tenant}`: business-initiated conversations used in the current cap window.
pub const CAP_USED: &str = "wafleet_cap_used";
/// Gauge `{tenant}`: the tenant's messaging limit (cap) in the current window.
pub const CAP_LIMIT: &str = "wafleet_cap_limit";
/// Counter `{tenant, kind}`: cap slots taken by new recipients (`kind` single or bulk).
pub const CAP_RESERVED: &str = "wafleet_cap_reserved_total";
/// Counter: cap slots given back because their message ended `failed` or `expired`.
pub const CAP_RELEASED: &str = "wafleet_cap_released_total";
/// Counter `{rule, outcome}`: policy decisions of the dispatcher (`rule` is the reason code,
/// `outcome` `rejected` or `deferred`).
pub const POLICY_DECISIONS: &str = "wafleet_policy_decisions_total";
/// Gauge `{sender}`: the rate a sender is held to now (messages per second), lowered after a
/// 130429 and raised back gradually.
pub const SENDER_RATE: &str = "wafleet_sender_rate";
/// Histogram `{sender}`: time a send waited for its sender's rate limiter.
pub const LIMITER_WAIT: &str = "wafleet_limiter_wait_seconds";
/// Gauge `{queue}`: messages ready in a queue (polled with a passive declare).
pub const QUEUE_MESSAGES: &str = "wafleet_queue_messages";
/// Gauge `{queue}`: consumers attached to a queue.
pub const QUEUE_CONSUMERS: &str = "wafleet_queue_consumers";
/// Histogram `{queue}`: time from publish to the start of processing (consumer lag).
pub const CONSUMER_LAG: &str = "wafleet_consumer_lag_seconds";
/// Histogram `{status}`: Meta's status timestamp → the webhook being processed here.
pub const WEBHOOK_LAG: &str = "wafleet_webhook_lag_seconds";
/// Counter: webhook posts refused for a bad signature.
pub const SIGNATURE_FAILURES: &str = "wafleet_webhook_signature_failures_total";
/// Gauge `{connection}`: 1 while a broker connection is open, 0 while down or recovering.
pub const BROKER_CONNECTED: &str = "wafleet_broker_connected";
/// Gauge: 1 while the database answers, 0 otherwise.
pub const DATABASE_UP: &str = "wafleet_database_up";
/// Gauge `{tenant, sender}`: the sender's quality rating, 0 unknown, 1 GREEN, 2 YELLOW, 3 RED.
pub const SENDER_QUALITY: &str = "wafleet_sender_quality";
/// Counter `{outcome}` (`accepted`, `rejected`, `duplicate`): campaign recipients at intake.
pub const CAMPAIGN_RECIPIENTS: &str = "wafleet_campaign_recipients_total";
/// Counter: bulk messages the feeder released to their dispatch shard.
pub const FEEDER_RELEASED: &str = "wafleet_feeder_released_total";
/// Counter `{reason}` (`quiet_time`, `messaging_limit`, `window`): feeder rounds that held a
/// sender's waiting bulk back, by what held it.
pub const FEEDER_HELD: &str = "wafleet_feeder_held_total";
/// Counter `{reason}` (`not_after_passed`, `campaign_cancelled`): held bulk messages ended
/// without reaching a shard (expired, cancelled).
pub const BULK_ENDED: &str = "wafleet_bulk_ended_total";
/// Counter `{status}` (`connected`, `token_invalid`, `account_restricted`): Meta connections
/// whose status changed (an `account.<tenant>` event goes with each).
pub const CONNECTION_CHANGES: &str = "wafleet_connection_changes_total";
/// Counter `{step}`: Embedded Signup steps that Meta refused (`exchange`, `numbers`,
/// `subscribe`, `register`).
pub const SIGNUP_FAILURES: &str = "wafleet_signup_failures_total";
/// Counter: messages the retention sweeper anonymised (`retention.messages`).
pub const RETENTION_ANONYMISED: &str = "wafleet_retention_anonymised_total";
/// Counter `{action}`: consent changes made through the API (`opt_out_added`,
/// `opt_out_removed`, `record_erased`), each with an audit entry.
pub const CONSENT_CHANGES: &str = "wafleet_consent_changes_total";
/// Counter: `messaging_limit` holds made due at once because the limit was raised.
pub const LIMIT_HOLDS_RELEASED: &str = "wafleet_limit_holds_released_total";
/// Counter `{category, country, billable}`: outbound messages Meta priced (the first `pricing`
/// of each message's status webhooks), by Meta's pricing category, the recipient's country
/// (ISO code, `unknown` without one) and whether Meta bills it (`true`, `false`).
pub const PRICED_MESSAGES: &str = "wafleet_priced_messages_total";
/// Counter `{outcome}` (`delivered`, `retry`, `dead`): attempts to deliver an event to a
/// tenant's HTTP endpoint.
pub const ENDPOINT_ATTEMPTS: &str = "wafleet_endpoint_attempts_total";
/// Histogram `{outcome}`: how long one endpoint request took.
pub const ENDPOINT_DURATION: &str = "wafleet_endpoint_request_seconds";

/// Registers help texts and units once per process (Prometheus `# HELP` lines).
pub fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        describe_counter!(MESSAGES, "Messages entering a state, by state and reason");
        describe_counter!(INTAKE_REJECTED, "Send requests refused at intake");
        describe_histogram!(GRAPH_DURATION, Unit::Seconds, "Graph API call latency");
        describe_counter!(RETRIES, "Dispatch messages sent to a retry tier");
        describe_counter!(DEAD_LETTERS, "Dispatch messages dead-lettered to <p>.dead");
        describe_gauge!(
            CIRCUITS_OPEN,
            "Circuit breakers open or half-open, by scope"
        );
        describe_counter!(CIRCUIT_OPENED, "Circuit breakers opened, by scope");
        describe_counter!(
            CIRCUIT_CLOSED,
            "Circuit breakers closed by a probe, by scope"
        );
        describe_gauge!(CAP_USED, "Conversations used in the tenant's cap window");
        describe_gauge!(CAP_LIMIT, "The tenant's cap in the current window");
        describe_counter!(CAP_RESERVED, "Cap slots taken by new recipients");
        describe_counter!(CAP_RELEASED, "Cap slots given back after a failure");
        describe_counter!(POLICY_DECISIONS, "Policy decisions, by rule and outcome");
        describe_gauge!(SENDER_RATE, "The rate a sender is held to now (mps)");
        describe_histogram!(LIMITER_WAIT, Unit::Seconds, "Wait for the sender's rate");
        describe_gauge!(QUEUE_MESSAGES, "Messages ready in the queue");
        describe_gauge!(QUEUE_CONSUMERS, "Consumers attached to the queue");
        describe_histogram!(CONSUMER_LAG, Unit::Seconds, "Publish to processing start");
        describe_histogram!(WEBHOOK_LAG, Unit::Seconds, "Meta status time to processing");
        describe_counter!(SIGNATURE_FAILURES, "Webhook posts with a bad signature");
        describe_gauge!(BROKER_CONNECTED, "1 while the broker connection is open");
        describe_gauge!(DATABASE_UP, "1 while the database answers");
        describe_gauge!(
            SENDER_QUALITY,
            "Sender quality: 0 unknown, 1 GREEN, 2 YELLOW, 3 RED"
        );
        describe_counter!(
            CAMPAIGN_RECIPIENTS,
            "Campaign recipients at intake, by outcome"
        );
        describe_counter!(
            FEEDER_RELEASED,
            "Bulk messages released to a dispatch shard"
        );
        describe_counter!(FEEDER_HELD, "Feeder rounds that held a sender's bulk back");
        describe_counter!(BULK_ENDED, "Held bulk messages expired or cancelled");
        describe_counter!(
            LIMIT_HOLDS_RELEASED,
            "Messaging-limit holds made due at once by a raised limit"
        );
        describe_counter!(
            CONNECTION_CHANGES,
            "Meta connections whose status changed, by new status"
        );
        describe_counter!(
            SIGNUP_FAILURES,
            "Embedded Signup steps Meta refused, by step"
        );
        describe_counter!(
            PRICED_MESSAGES,
            "Messages Meta priced, by category, country and billable"
        );
        describe_counter!(
            ENDPOINT_ATTEMPTS,
            "Webhook endpoint delivery attempts, by outcome"
        );
        describe_histogram!(
            ENDPOINT_DURATION,
            Unit::Seconds,
            "Webhook endpoint request duration"
        );
        describe_counter!(
            RETENTION_ANONYMISED,
            "Messages anonymised by the retention sweeper"
        );
        describe_counter!(
            CONSENT_CHANGES,
            "Consent changes and erasures made through the API, by action"
        );
    });
}

/// Counts a message entering `state` (`reason` is a stable code, `""` when there is none).
pub fn message_state(state: &str, reason: Option<&str>) {
    let (state, reason) = (state.to_owned(), reason.unwrap_or("").to_owned());
    metrics::counter!(MESSAGES, "state" => state, "reason" => reason).increment(1);
}

/// Records how long a send waited for its sender's budget.
pub fn limiter_wait(sender: &str, waited: Duration) {
    metrics::histogram!(LIMITER_WAIT, "sender" => sender.to_owned()).record(waited.as_secs_f64());
}

/// Counts a dispatch message sent to retry tier `tier` (its label, e.g. `30s`).
pub fn retried(tier: String) {
    metrics::counter!(RETRIES, "tier" => tier).increment(1);
}

/// Counts a dispatch message dead-lettered to `<p>.dead`.
pub fn dead_lettered() {
    metrics::counter!(DEAD_LETTERS).increment(1);
}

/// Publishes a tenant's cap usage and limit (for the cap accounting).
pub fn cap(tenant: &str, used: u64, limit: u64) {
    metrics::gauge!(CAP_USED, "tenant" => tenant.to_owned()).set(used as f64);
    metrics::gauge!(CAP_LIMIT, "tenant" => tenant.to_owned()).set(limit as f64);
}

/// Counts a policy decision (`rule` is its reason code; `outcome` `rejected` or `deferred`).
pub fn policy_decision(rule: &'static str, outcome: &'static str) {
    metrics::counter!(POLICY_DECISIONS, "rule" => rule, "outcome" => outcome).increment(1);
}

/// Records the rate a sender is held to now.
pub fn sender_rate(sender: &str, per_second: u32) {
    metrics::gauge!(SENDER_RATE, "sender" => sender.to_owned()).set(f64::from(per_second));
}

/// Records the lag of one consumed message in `queue` (a role such as `dispatch`).
pub fn consumer_lag(queue: &'static str, lag: Duration) {
    metrics::histogram!(CONSUMER_LAG, "queue" => queue).record(lag.as_secs_f64());
}

/// Records Meta's status-to-here lag for one webhook status.
pub fn webhook_lag(status: &str, lag: Duration) {
    metrics::histogram!(WEBHOOK_LAG, "status" => status.to_owned()).record(lag.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_name_is_a_valid_prometheus_name_under_our_namespace() {
        for name in [
            MESSAGES,
            INTAKE_REJECTED,
            GRAPH_DURATION,
            RETRIES,
            DEAD_LETTERS,
            CIRCUITS_OPEN,
            CIRCUIT_OPENED,
            CIRCUIT_CLOSED,
            CAP_USED,
            CAP_LIMIT,
            LIMITER_WAIT,
            CAP_RESERVED,
            CAP_RELEASED,
            POLICY_DECISIONS,
            SENDER_RATE,
            QUEUE_MESSAGES,
            QUEUE_CONSUMERS,
            CONSUMER_LAG,
            WEBHOOK_LAG,
            SIGNATURE_FAILURES,
            BROKER_CONNECTED,
            DATABASE_UP,
            SENDER_QUALITY,
            CAMPAIGN_RECIPIENTS,
            FEEDER_RELEASED,
            FEEDER_HELD,
            BULK_ENDED,
        ] {
            assert!(name.starts_with("wafleet_"), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
        }
    }
}
