//! OpenTelemetry traces: `tracing` spans (one per request and per stage)
//! exported over OTLP/HTTP (protobuf) when `[telemetry] otlp_endpoint` is
//! set; off by default. The caller's W3C `traceparent` becomes the parent of
//! the request span, so the gateway's spans join the caller's trace.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The exporter pipeline; shut it down to flush the last spans.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// A tracer provider exporting to `endpoint` (e.g.
    /// `http://127.0.0.1:4318/v1/traces`) in batches, on the tokio runtime.
    pub fn start(
        endpoint: &str,
        service: &str,
    ) -> Result<(Traces, opentelemetry_sdk::trace::Tracer), String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service.to_string())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("lianqiao");
        Ok((Traces { provider }, tracer))
    }

    /// Export what is buffered and stop.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("OTLP: flushing the last spans failed: {e}");
        }
    }
}

/// Make the caller's trace (from `traceparent`) the parent of `span`.
pub fn join_caller_trace(span: &tracing::Span, trace_id: &str, parent_id: &str) {
    let (Ok(trace), Ok(parent)) = (TraceId::from_hex(trace_id), SpanId::from_hex(parent_id)) else {
        return;
    };
    let context = SpanContext::new(
        trace,
        parent,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
}
