//! OpenTelemetry traces: `tracing` spans (one per request and per stage)
//! exported over OTLP/HTTP (protobuf) when `[telemetry] otlp_endpoint` is
//! set; off by default. Sampled by `trace_sample_ratio` at the root. The
//! caller's W3C `traceparent` becomes the parent of the request span, so
//! the gateway's spans join the caller's trace.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanProcessor};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::otlp_http;
use super::otlp_traces::Encoder;

/// The exporter pipeline; shut it down to flush the last spans.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// A tracer provider exporting to `endpoint` (e.g.
    /// `http://127.0.0.1:4318/v1/traces`) in batches, on the tokio runtime.
    /// `ratio` of the traces that start here are sampled; a caller's
    /// sampling decision (its `traceparent` flags) is followed.
    pub fn start(
        endpoint: &str,
        service: &str,
        ratio: f64,
    ) -> Result<(Traces, opentelemetry_sdk::trace::Tracer), String> {
        // The config loader has checked it is an http:// URL.
        let endpoint: hyper::Uri = endpoint
            .parse()
            .map_err(|e| format!("OTLP endpoint {endpoint:?} is not a URL: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_string())
            .build();
        let exporter = Exporter {
            client: otlp_http::client(),
            endpoint: endpoint.to_string(),
            encoder: Encoder::new(&resource),
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "trace export needs the async runtime".to_string())?;
        let delay = std::env::var("OTEL_BSP_SCHEDULE_DELAY")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis);
        let processor = QueueProcessor::start(exporter, runtime, delay);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio.clamp(0.0, 1.0),
            ))))
            .with_resource(resource)
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

/// Spans waiting for export at most; beyond, new spans are dropped (and
/// counted) rather than let memory grow while a collector is down.
const QUEUE_MAX: usize = 16_384;
/// Spans per export request.
const BATCH_MAX: usize = 2_048;

/// Where spans go: encoded by `otlp_traces` (not `opentelemetry-otlp`,
/// whose conversion cost ~10k instructions a span) and POSTed.
struct Exporter {
    client: otlp_http::Client,
    endpoint: String,
    encoder: Encoder,
}

/// A batching span processor that costs a request only a push under a
/// lock: finished spans wait in a queue that one task drains on a timer.
/// (The SDK's async-runtime batch processor wakes its task for every
/// span; at a dozen spans per request that cost 13% of p50 in
/// `cargo xtask bench`.)
struct QueueProcessor {
    queue: Arc<Mutex<Vec<SpanData>>>,
    dropped: Arc<AtomicU64>,
    /// One export at a time (the timer's and a flush's).
    exporter: Arc<tokio::sync::Mutex<Exporter>>,
    runtime: tokio::runtime::Handle,
    stopped: Arc<AtomicBool>,
}

impl QueueProcessor {
    fn start(
        exporter: Exporter,
        runtime: tokio::runtime::Handle,
        delay: Duration,
    ) -> QueueProcessor {
        let processor = QueueProcessor {
            queue: Arc::default(),
            dropped: Arc::default(),
            exporter: Arc::new(tokio::sync::Mutex::new(exporter)),
            runtime,
            stopped: Arc::default(),
        };
        let (queue, exporter, stopped, dropped) = (
            processor.queue.clone(),
            processor.exporter.clone(),
            processor.stopped.clone(),
            processor.dropped.clone(),
        );
        processor.runtime.spawn(async move {
            let mut failing = false;
            while !stopped.load(Ordering::Relaxed) {
                tokio::time::sleep(delay).await;
                let lost = dropped.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    tracing::warn!(spans = lost, "OTLP: span queue full, spans dropped");
                }
                match export_queued(&queue, &exporter).await {
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "OTLP: span export failed; retrying every interval");
                    }
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("OTLP: span export works again");
                    }
                    _ => {}
                }
            }
        });
        processor
    }

    /// Export everything queued now, from any thread (a thread of its own
    /// waits on the runtime, so this never blocks a runtime worker's
    /// future).
    fn flush_now(&self) -> OTelSdkResult {
        let (queue, exporter, runtime) = (
            self.queue.clone(),
            self.exporter.clone(),
            self.runtime.clone(),
        );
        std::thread::spawn(move || runtime.block_on(export_queued(&queue, &exporter)))
            .join()
            .map_err(|_| OTelSdkError::InternalFailure("the flush thread panicked".into()))?
            .map_err(OTelSdkError::InternalFailure)
    }
}

/// Drain the queue into export requests of at most `BATCH_MAX` spans.
async fn export_queued(
    queue: &Mutex<Vec<SpanData>>,
    exporter: &tokio::sync::Mutex<Exporter>,
) -> Result<(), String> {
    let spans = match queue.lock() {
        Ok(mut q) => std::mem::take(&mut *q),
        Err(_) => return Err("the span queue is poisoned".into()),
    };
    let exporter = exporter.lock().await;
    for batch in spans.chunks(BATCH_MAX) {
        let body = exporter.encoder.encode(batch);
        otlp_http::post(&exporter.client, &exporter.endpoint, body).await?;
    }
    Ok(())
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() || self.stopped.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut q) = self.queue.lock()
            && q.len() < QUEUE_MAX
        {
            q.push(span);
            return;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush_now()
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if self.stopped.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        self.flush_now()
    }

    // The provider's resource is the one the encoder was made with.
}

impl std::fmt::Debug for QueueProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueProcessor").finish_non_exhaustive()
    }
}

/// The `tracing` layer that turns spans into OpenTelemetry spans, with
/// only the attributes the gateway sets: no source locations, thread
/// names, targets or busy/idle times on every span, and no OpenTelemetry
/// context switched on every poll (the gateway reads span contexts through
/// `tracing`). Each of those costs every span of every request.
pub fn layer<S>(
    tracer: opentelemetry_sdk::trace::Tracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
}

/// The exported (OpenTelemetry) id of `span`, if spans are exported and it
/// has one.
pub fn exported_span_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let exported = context.span();
    let exported = exported.span_context();
    exported.is_valid().then(|| exported.span_id().to_string())
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
