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
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::trace::SpanData;

use super::otlp_http;
use super::otlp_traces::{Encoder, encode_span};
use super::spans::{self, SpanRecorder};

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
            scope: spans::scope(),
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

/// Encoded spans waiting for export at most (about 50,000 spans); beyond,
/// new spans are dropped (and counted) rather than let memory grow while a
/// collector is down.
const QUEUE_MAX_BYTES: usize = 16 << 20;
/// Encoded spans per export request at most (about 3,000 spans).
const BATCH_MAX_BYTES: usize = 1 << 20;

/// Finished spans waiting for export, already encoded as OTLP protobuf. A
/// request pays the encoding (~1.3k instructions a span) and an append
/// under a lock; one task sends the batches on a timer. Encoding at once
/// lets each span's data be freed while it is still in cache, and keeps
/// what waits compact (~300 bytes a span); queued as `SpanData`, the spans
/// of a second of traffic were allocated, left to go cold and freed in one
/// go by the exporter. (The SDK's batch processor woke its task for every
/// span; at a dozen spans per request that cost 13% of p50.)
#[derive(Default)]
pub struct SpanQueue {
    pending: Mutex<Pending>,
    dropped: AtomicU64,
    stopped: AtomicBool,
}

/// Batches of encoded spans, the last one filling.
#[derive(Default)]
struct Pending {
    batches: Vec<Vec<u8>>,
    bytes: usize,
}

impl SpanQueue {
    pub(super) fn push(&self, span: &SpanData) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut pending) = self.pending.lock()
            && pending.bytes < QUEUE_MAX_BYTES
        {
            let pending = &mut *pending;
            if pending
                .batches
                .last()
                .is_none_or(|batch| batch.len() >= BATCH_MAX_BYTES)
            {
                pending.batches.push(Vec::with_capacity(64 << 10));
            }
            let Some(batch) = pending.batches.last_mut() else {
                return;
            };
            let before = batch.len();
            encode_span(batch, span);
            pending.bytes += batch.len() - before;
            return;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything queued, oldest first: batches of encoded spans.
    pub(super) fn take(&self) -> Vec<Vec<u8>> {
        self.pending
            .lock()
            .map(|mut pending| {
                pending.bytes = 0;
                std::mem::take(&mut pending.batches)
            })
            .unwrap_or_default()
    }
}

/// Where spans go: wrapped by `otlp_traces` (not `opentelemetry-otlp`,
/// whose conversion cost ~10k instructions a span) and POSTed.
struct Exporter {
    client: otlp_http::Client,
    endpoint: String,
    encoder: Encoder,
    /// The recorder's, the scope of every span.
    scope: InstrumentationScope,
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

/// Send what is queued, one export request per batch.
async fn export_queued(
    queue: &SpanQueue,
    exporter: &tokio::sync::Mutex<Exporter>,
) -> Result<(), String> {
    let batches = queue.take();
    let exporter = exporter.lock().await;
    for batch in batches {
        let body = exporter.encoder.request(&exporter.scope, &batch);
        otlp_http::post(&exporter.client, &exporter.endpoint, body).await?;
    }
    Ok(())
}

/// The exported (OpenTelemetry) id of `span`, if spans are exported.
pub fn exported_span_id(span: &tracing::Span) -> Option<String> {
    SpanIds::of(span).map(|ids| ids.span_id.to_string())
}
