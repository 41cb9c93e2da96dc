//! Logs, traces and metrics, set up in one place.
//!
//! - Logs: `tracing` with `RUST_LOG` (default `info`); JSON lines when `WAFLEET_LOG_FORMAT=json`.
//! - Traces: OpenTelemetry through `tracing-opentelemetry`; W3C trace context is always
//!   propagated (AMQP headers, stored with messages), and spans are exported over OTLP/HTTP only
//!   when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - Metrics: the `metrics` facade with a Prometheus recorder, served on each service's `/metrics`.
//!
//! Spans and logs never carry raw phone numbers or secrets: fields use `PhoneNumber`'s masked
//! `Display`, and secrets are `config::Secret`, whose `Debug` is redacted.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanExporter},
};
use std::sync::OnceLock;
use tracing_subscriber::{
    EnvFilter, Layer, fmt::writer::BoxMakeWriter, layer::SubscriberExt, util::SubscriberInitExt,
};

/// Keeps the tracer provider alive; flushes spans when dropped.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {err}");
        }
    }
}

/// Installs logging, tracing and the metrics recorder for a process named `service`.
pub fn init(service: &str) -> anyhow::Result<TelemetryGuard> {
    let mut builder = SdkTracerProvider::builder();
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        // HTTP/protobuf with the blocking client on the batch processor's own thread: see
        // stack.md pitfall O1 (never enable opentelemetry-otlp's async reqwest client).
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let json = std::env::var("WAFLEET_LOG_FORMAT").is_ok_and(|v| v == "json");
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_target(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(true).boxed()
    };
    install(service, builder, fmt)
}

/// Installs telemetry that exports every span synchronously to `exporter` (tests pass
/// `opentelemetry_sdk`'s `InMemorySpanExporter`) and writes log lines to `logs`. One per process.
pub fn init_with_exporter<E: SpanExporter + 'static>(
    service: &str,
    exporter: E,
    logs: BoxMakeWriter,
) -> anyhow::Result<TelemetryGuard> {
    let builder = SdkTracerProvider::builder().with_simple_exporter(exporter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(logs)
        .boxed();
    install(service, builder, fmt)
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

fn install(
    service: &str,
    builder: opentelemetry_sdk::trace::TracerProviderBuilder,
    fmt: BoxedLayer,
) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let provider = builder.with_resource(resource).build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer("wafleet");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(fmt)
        // Without context activation a span's OTel span starts lazily, so a consumer can still
        // adopt the publisher's trace (`amqp::adopt_trace_context`) inside its instrumented
        // function: with activation on, entering the span starts it and `set_parent` fails.
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_context_activation(false),
        )
        .with(filter)
        .try_init()?;
    metrics_handle();
    crate::metrics::describe();
    Ok(TelemetryGuard { provider })
}

/// Links `span` to the trace a stored W3C `traceparent` names (e.g. a status webhook's span to
/// the send it reports on). Malformed or empty values are ignored.
pub fn link_to_traceparent(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let linked = cx.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// The process-wide Prometheus recorder, installed on first use (services running side by side
/// in one process, as in `wafleet all` and the tests, share it).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Real histograms (not summaries), so latencies aggregate across replicas in PromQL.
        let buckets = [
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
        ];
        PrometheusBuilder::new()
            .set_buckets(&buckets)
            .expect("non-empty buckets")
            .install_recorder()
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
    })
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render_metrics() -> String {
    let handle = metrics_handle();
    handle.run_upkeep();
    handle.render()
}
