//! What SREs see of status webhooks: the processing span links to the trace of each send it
//! reports on (the `traceparent` stored with the message at intake), and Meta's status time →
//! now is recorded as webhook lag.

use crate::statuses::StatusItem;

/// Records lag for `items` (the links to their sends' traces are made by `statuses::apply`,
/// which reads those rows anyway).
pub fn statuses_received(items: &[StatusItem]) {
    let now = chrono::Utc::now();
    for item in items {
        let lag = (now - item.at).to_std().unwrap_or_default();
        wafleet_core::metrics::webhook_lag(&item.status, lag);
    }
}

/// Links the current span to the traces of the sends a status batch reports on.
pub fn link_sends<'a>(traceparents: impl IntoIterator<Item = &'a str>) {
    let span = tracing::Span::current();
    let mut seen = std::collections::HashSet::new();
    for traceparent in traceparents {
        if seen.insert(traceparent) {
            wafleet_core::telemetry::link_to_traceparent(&span, traceparent);
        }
    }
}
