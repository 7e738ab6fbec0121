//! Trace export: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the coordinator's and the
//! worker's tracing spans (job, task, attempt, worker) are sent over OTLP/HTTP
//! (protobuf) to that collector, e.g. Jaeger on port 4318.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The running exporter; flush it with [`Traces::shutdown`] before exiting.
pub struct Traces(SdkTracerProvider);

impl Traces {
    /// Sends the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("warning: flushing traces: {e}");
        }
    }
}

/// The trace endpoint from the environment: the traces URL as given, or the
/// base URL with `/v1/traces` appended.
fn endpoint() -> Option<String> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(url) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Some(url);
    }
    get("OTEL_EXPORTER_OTLP_ENDPOINT").map(|b| format!("{}/v1/traces", b.trim_end_matches('/')))
}

/// A tracing layer exporting to the configured OTLP endpoint, if any.
pub fn from_env<S>(service: &'static str) -> Result<Option<(impl Layer<S>, Traces)>, String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(url) = endpoint() else {
        return Ok(None);
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(format!("OTLP endpoint {url:?} is not an http(s) URL"));
    }
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .build()
        .map_err(|e| format!("OTLP exporter for {url}: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    Ok(Some((layer, Traces(provider))))
}
