//! Message properties and headers: JSON properties, typed header access, the publish-time
//! stamp consumers derive their lag from, and W3C trace context carried across the broker.

use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, ShortString},
};
use std::time::Duration;

/// Header carrying the publish time (Unix milliseconds); consumers derive their lag from it.
pub const PUBLISHED_AT_HEADER: &str = "x-wafleet-published-at";

pub(super) fn stamp_published_at(props: &mut BasicProperties) {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        PUBLISHED_AT_HEADER.into(),
        AMQPValue::LongLongInt(chrono::Utc::now().timestamp_millis()),
    );
    *props = props.clone().with_headers(headers);
}

/// How long a consumed message waited since it was last published by us. `None` for messages
/// that came back through a retry tier (`x-death`): their wait was on purpose.
pub fn delivery_lag(props: &BasicProperties) -> Option<Duration> {
    let dead_lettered = props
        .headers()
        .as_ref()
        .is_some_and(|h| h.inner().contains_key("x-death"));
    let published = header_i64(props, PUBLISHED_AT_HEADER).filter(|_| !dead_lettered)?;
    let lag_ms = chrono::Utc::now().timestamp_millis() - published;
    Some(Duration::from_millis(lag_ms.max(0) as u64))
}

/// Records the consumer lag of a delivery from queue role `queue` (`intake`, `dispatch`, …).
pub fn record_consumer_lag(queue: &'static str, props: &BasicProperties) {
    if let Some(lag) = delivery_lag(props) {
        crate::metrics::consumer_lag(queue, lag);
    }
}

/// Persistent JSON properties with a message id and extra headers.
pub fn json_properties(message_id: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(message_id.into())
        .with_headers(headers)
}

/// Reads a string header (long or short string).
pub fn header_str<'a>(props: &'a BasicProperties, key: &str) -> Option<&'a str> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// Reads an integer header.
pub fn header_i64(props: &BasicProperties, key: &str) -> Option<i64> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

/// Sets a string header.
pub fn set_header(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(ShortString::from(key), AMQPValue::LongString(value.into()));
}

/// Carries the current span's W3C trace context (`traceparent`, `tracestate`) in headers.
pub fn inject_trace_context(headers: &mut FieldTable) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    for (k, v) in carrier {
        set_header(headers, &k, &v);
    }
}

/// Makes `span` a child of the trace context carried in `props`' headers, if any.
pub fn adopt_trace_context(span: &tracing::Span, props: &BasicProperties) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let mut carrier = std::collections::HashMap::new();
    for key in ["traceparent", "tracestate"] {
        if let Some(v) = header_str(props, key) {
            carrier.insert(key.to_owned(), v.to_owned());
        }
    }
    if carrier.is_empty() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(cx);
}

/// Links `span` to the trace context carried in `props`' headers: a batch's process span is
/// the child of its first message's trace and links to every message's trace.
pub fn link_trace_context(span: &tracing::Span, props: &BasicProperties) {
    if let Some(traceparent) = header_str(props, "traceparent") {
        crate::telemetry::link_to_traceparent(span, traceparent);
    }
}

/// The trace context of the current span as a `traceparent` string, to store with a message.
pub fn current_traceparent() -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let mut carrier = std::collections::HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier.remove("traceparent")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_lag_counts_from_our_publish_but_not_through_a_retry_tier() {
        let mut props = BasicProperties::default();
        stamp_published_at(&mut props);
        let lag = delivery_lag(&props).expect("stamped on publish");
        assert!(lag < Duration::from_secs(60));

        let mut headers = props.headers().clone().unwrap_or_default();
        headers.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
        let through_retry = props.clone().with_headers(headers);
        assert_eq!(delivery_lag(&through_retry), None);
        assert_eq!(delivery_lag(&BasicProperties::default()), None);
    }
}
