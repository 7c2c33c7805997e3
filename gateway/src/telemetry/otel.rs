//! OpenTelemetry traces: `tracing` spans (one per request and per stage)
//! recorded by `spans::SpanRecorder` and exported over OTLP/HTTP
//! (protobuf) when `[telemetry] otlp_endpoint` is set; off by default.
//! Sampled by `trace_sample_ratio` at the root. The caller's W3C
//! `traceparent` becomes the parent of the request span, so the gateway's
//! spans join the caller's trace.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lianqiao_host::trace::SpanIds;
use opentelemetry_sdk::trace::SpanData;

use super::otlp_http;
use super::otlp_traces::Encoder;
use super::spans::SpanRecorder;

/// The export pipeline; shut it down to flush the last spans.
pub struct Traces {
    queue: Arc<SpanQueue>,
    /// One export at a time (the timer's and the final flush).
    exporter: Arc<tokio::sync::Mutex<Exporter>>,
    runtime: tokio::runtime::Handle,
}

impl Traces {
    /// An exporter to `endpoint` (e.g. `http://127.0.0.1:4318/v1/traces`)
    /// on the tokio runtime, and the `tracing` layer that feeds it. `ratio`
    /// of the traces that start here are sampled; a caller's sampling
    /// decision (its `traceparent` flags) is followed.
    pub fn start(
        endpoint: &str,
        service: &str,
        ratio: f64,
    ) -> Result<(Traces, SpanRecorder), String> {
        // The config loader has checked it is an http:// URL.
        let endpoint: hyper::Uri = endpoint
            .parse()
            .map_err(|e| format!("OTLP endpoint {endpoint:?} is not a URL: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(service.to_string())
            .build();
        let exporter = Arc::new(tokio::sync::Mutex::new(Exporter {
            client: otlp_http::client(),
            endpoint: endpoint.to_string(),
            encoder: Encoder::new(&resource),
        }));
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "trace export needs the async runtime".to_string())?;
        let delay = std::env::var("OTEL_BSP_SCHEDULE_DELAY")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(1), Duration::from_millis);
        let queue = Arc::new(SpanQueue::default());
        runtime.spawn(export_every(delay, queue.clone(), exporter.clone()));
        let recorder = SpanRecorder::new(ratio, queue.clone());
        Ok((
            Traces {
                queue,
                exporter,
                runtime,
            },
            recorder,
        ))
    }

    /// Export what is queued and stop. Callable from any thread: a thread
    /// of its own waits on the runtime, so this never blocks a runtime
    /// worker's future.
    pub fn shutdown(&self) {
        if self.queue.stopped.swap(true, Ordering::Relaxed) {
            return;
        }
        let (queue, exporter, runtime) = (
            self.queue.clone(),
            self.exporter.clone(),
            self.runtime.clone(),
        );
        let flushed =
            std::thread::spawn(move || runtime.block_on(export_queued(&queue, &exporter))).join();
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("OTLP: flushing the last spans failed: {e}"),
            Err(_) => eprintln!("OTLP: the flush thread panicked"),
        }
    }
}

/// Spans waiting for export at most; beyond, new spans are dropped (and
/// counted) rather than let memory grow while a collector is down.
const QUEUE_MAX: usize = 16_384;
/// Spans per export request.
const BATCH_MAX: usize = 2_048;

/// Finished spans waiting for export. A request pays a push under a lock;
/// one task drains the queue on a timer. (The SDK's batch processor woke
/// its task for every span; at a dozen spans per request that cost 13% of
/// p50 in `cargo xtask bench`.)
#[derive(Default)]
pub struct SpanQueue {
    spans: Mutex<Vec<SpanData>>,
    dropped: AtomicU64,
    stopped: AtomicBool,
}

impl SpanQueue {
    pub(super) fn push(&self, span: SpanData) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut q) = self.spans.lock()
            && q.len() < QUEUE_MAX
        {
            q.push(span);
            return;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything queued, oldest first. The queue starts again with the
    /// room the last interval needed, so it does not regrow (and copy every
    /// span on the way) each interval.
    pub(super) fn take(&self) -> Vec<SpanData> {
        self.spans
            .lock()
            .map(|mut q| {
                let room = q.len();
                std::mem::replace(&mut *q, Vec::with_capacity(room))
            })
            .unwrap_or_default()
    }
}

/// Where spans go: encoded by `otlp_traces` (not `opentelemetry-otlp`,
/// whose conversion cost ~10k instructions a span) and POSTed.
struct Exporter {
    client: otlp_http::Client,
    endpoint: String,
    encoder: Encoder,
}

/// The export task: every `delay`, what is queued goes out; failures are
/// logged once per outage.
async fn export_every(
    delay: Duration,
    queue: Arc<SpanQueue>,
    exporter: Arc<tokio::sync::Mutex<Exporter>>,
) {
    let mut failing = false;
    while !queue.stopped.load(Ordering::Relaxed) {
        tokio::time::sleep(delay).await;
        let lost = queue.dropped.swap(0, Ordering::Relaxed);
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
}

/// Drain the queue into export requests of at most `BATCH_MAX` spans.
async fn export_queued(
    queue: &SpanQueue,
    exporter: &tokio::sync::Mutex<Exporter>,
) -> Result<(), String> {
    let spans = queue.take();
    let exporter = exporter.lock().await;
    for batch in spans.chunks(BATCH_MAX) {
        let body = exporter.encoder.encode(batch);
        otlp_http::post(&exporter.client, &exporter.endpoint, body).await?;
    }
    Ok(())
}

/// The exported (OpenTelemetry) id of `span`, if spans are exported.
pub fn exported_span_id(span: &tracing::Span) -> Option<String> {
    SpanIds::of(span).map(|ids| ids.span_id.to_string())
}
