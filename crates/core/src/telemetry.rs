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
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use std::sync::OnceLock;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

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
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        // HTTP/protobuf with the blocking client on the batch processor's own thread: see
        // stack.md pitfall O1 (never enable opentelemetry-otlp's async reqwest client).
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer("wafleet");

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("WAFLEET_LOG_FORMAT").is_ok_and(|v| v == "json");
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_target(true)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(true).boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()?;
    metrics_handle();
    Ok(TelemetryGuard { provider })
}

/// The process-wide Prometheus recorder, installed on first use (services running side by side
/// in one process, as in `wafleet all` and the tests, share it).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
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
