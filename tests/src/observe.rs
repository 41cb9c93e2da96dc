//! Test-side telemetry: one in-memory span exporter and one log buffer per test process
//! (installed once; tests find their own spans by trace id), and a Prometheus text reader.

use opentelemetry::{Value as OtelValue, trace::TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use wafleet_core::telemetry::{TelemetryGuard, init_with_exporter};

/// Everything the process exported: finished spans and formatted log lines.
pub struct Captured {
    pub spans: InMemorySpanExporter,
    logs: Arc<Mutex<Vec<u8>>>,
    _guard: TelemetryGuard,
}

/// Installs the capturing telemetry on first use (a process has one global subscriber).
pub fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let spans = InMemorySpanExporter::default();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let writer = BoxMakeWriter::new(move || LogSink(sink.clone()));
        let guard = init_with_exporter("wafleet-tests", spans.clone(), writer)
            .expect("the test process installs telemetry once");
        Captured {
            spans,
            logs,
            _guard: guard,
        }
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Every span finished so far.
    pub fn all(&self) -> Vec<SpanData> {
        self.spans.get_finished_spans().expect("in-memory spans")
    }

    /// Every log line written so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.lock().expect("log buffer")).into_owned()
    }

    /// Waits (10 s at most) until a finished span satisfies `found`, and returns it.
    pub async fn wait_for(&self, what: &str, found: impl Fn(&SpanData) -> bool) -> SpanData {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(span) = self.all().into_iter().find(|s| found(s)) {
                return span;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = self
                    .all()
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {} {}",
                            s.span_context.trace_id(),
                            s.parent_span_id,
                            s.name
                        )
                    })
                    .collect();
                panic!("no span {what} was exported; spans:\n{}", seen.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The finished spans of one trace.
    pub fn trace(&self, trace: TraceId) -> Vec<SpanData> {
        self.all()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect()
    }
}

/// A span attribute as a string, if present.
pub fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            OtelValue::String(s) => s.as_str().to_owned(),
            other => other.to_string(),
        })
}

/// Every string a span carries: its name, attributes, events and their attributes.
pub fn span_text(span: &SpanData) -> String {
    let mut text = format!("{} ", span.name);
    for kv in &span.attributes {
        text.push_str(&format!("{}={} ", kv.key, kv.value));
    }
    for event in span.events.iter() {
        text.push_str(&format!("{} ", event.name));
        for kv in &event.attributes {
            text.push_str(&format!("{}={} ", kv.key, kv.value));
        }
    }
    text
}

/// The sum of every sample of `name` whose labels include all of `labels`, in a Prometheus
/// text exposition (0 when absent).
pub fn metric(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
