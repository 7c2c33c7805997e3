//! The span recorder: a `tracing` layer that turns the gateway's spans
//! into OpenTelemetry spans and hands the finished ones to the export queue
//! (`otel.rs`).
//!
//! Why not `tracing-opentelemetry`: its layer builds an OpenTelemetry
//! `SpanBuilder` and parent `Context` for every span, starts each parent
//! early through the SDK's tracer (sampler, id generator, a second span
//! object), locks and timestamps at every poll exit, and does most of that
//! for spans the sampler then drops. On the bench's request (15 spans) that
//! was ~130k instructions and 5% of p50 (BENCHMARKS.md). Here a span costs
//! two random ids and a small record, encoded to protobuf as it closes;
//! the sampling decision is taken once, at the root, and a child of an
//! unsampled trace records nothing but its ids.
//!
//! What a span becomes: its name (or its `otel.name` field), its kind from
//! `otel.kind` (`server`, `client`, `producer`, `consumer`; else internal),
//! every other field it records as an attribute, the events inside it as
//! span events (an ERROR event also sets the status to error), start and
//! end times (creation and close).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use lianqiao_host::trace::{SpanIds, with_registry_span};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use rand::Rng as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, span};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::otel::SpanQueue;

/// The layer. One per process, built by `otel::Traces::start`.
pub struct SpanRecorder {
    /// A new trace is sampled when the low 63 bits of its id are below
    /// this: OpenTelemetry's `TraceIdRatioBased`, so a trace sampled here
    /// is sampled by any SDK that samples by the same ratio downstream.
    sample_below: u64,
    queue: Arc<SpanQueue>,
    scope: InstrumentationScope,
}

impl SpanRecorder {
    pub(super) fn new(ratio: f64, queue: Arc<SpanQueue>) -> SpanRecorder {
        SpanRecorder {
            sample_below: sample_threshold(ratio),
            queue,
            scope: scope(),
        }
    }

    fn samples(&self, trace_id: TraceId) -> bool {
        let low = u128::from_be_bytes(trace_id.to_bytes()) as u64;
        self.sample_below == u64::MAX || (low >> 1) < self.sample_below
    }
}

/// The instrumentation scope of every span the recorder makes.
pub(super) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("lianqiao").build()
}

/// `ratio` as the bound `samples` compares with (`u64::MAX`: every trace).
fn sample_threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio.max(0.0) * (1u64 << 63) as f64) as u64
    }
}

fn new_trace_id() -> TraceId {
    TraceId::from(rand::rng().random_range(1..=u128::MAX))
}

fn new_span_id() -> SpanId {
    SpanId::from(rand::rng().random_range(1..=u64::MAX))
}

/// What a span has recorded so far. Every span of a sampled trace has one;
/// a root has one either way, because a caller's `traceparent` (applied
/// after the span is created, `join_caller_trace`) can still sample it.
struct Recording {
    name: Cow<'static, str>,
    kind: SpanKind,
    parent_span_id: SpanId,
    parent_is_remote: bool,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    status: Status,
}

impl Recording {
    fn into_span_data(self, ids: SpanIds, scope: &InstrumentationScope) -> SpanData {
        let mut events = SpanEvents::default();
        events.events = self.events;
        SpanData {
            span_context: SpanContext::new(
                ids.trace_id,
                ids.span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: self.parent_span_id,
            parent_span_is_remote: self.parent_is_remote,
            span_kind: self.kind,
            name: self.name,
            start_time: self.start,
            end_time: SystemTime::now(),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events,
            links: SpanLinks::default(),
            status: self.status,
            instrumentation_scope: scope.clone(),
        }
    }
}

/// A value for an attribute, the span's name or kind.
fn set(recording: &mut Recording, field: &Field, value: Value) {
    match (field.name(), value) {
        ("otel.name", value) => recording.name = Cow::Owned(value.as_str().into_owned()),
        ("otel.kind", value) => {
            recording.kind = match value.as_str().as_ref() {
                "server" => SpanKind::Server,
                "client" => SpanKind::Client,
                "producer" => SpanKind::Producer,
                "consumer" => SpanKind::Consumer,
                _ => SpanKind::Internal,
            }
        }
        (name, value) => recording.attributes.push(KeyValue::new(name, value)),
    }
}

impl Visit for Recording {
    fn record_str(&mut self, field: &Field, value: &str) {
        set(self, field, Value::from(value.to_string()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        set(self, field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::I64);
        set(self, field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        set(self, field, Value::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        set(self, field, Value::Bool(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        set(self, field, Value::from(format!("{value:?}")));
    }
}

/// An event's fields as a span event: `message` names it, the rest are
/// its attributes.
struct EventFields {
    name: Option<String>,
    attributes: Vec<KeyValue>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.name = Some(value.to_string());
        } else {
            self.attributes
                .push(KeyValue::new(field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        if field.name() == "message" {
            self.name = Some(value);
        } else {
            self.attributes.push(KeyValue::new(field.name(), value));
        }
    }
}

impl<S> Layer<S> for SpanRecorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = match attrs.parent() {
            Some(parent) => ctx.span(parent),
            None if attrs.is_contextual() => ctx.lookup_current(),
            None => None,
        };
        let parent = parent.and_then(|p| p.extensions().get::<SpanIds>().copied());
        let ids = match parent {
            Some(parent) => SpanIds {
                trace_id: parent.trace_id,
                span_id: new_span_id(),
                sampled: parent.sampled,
            },
            None => {
                let trace_id = new_trace_id();
                SpanIds {
                    trace_id,
                    span_id: new_span_id(),
                    sampled: self.samples(trace_id),
                }
            }
        };
        let mut extensions = span.extensions_mut();
        extensions.replace(ids);
        if ids.sampled || parent.is_none() {
            let mut recording = Recording {
                name: Cow::Borrowed(attrs.metadata().name()),
                kind: SpanKind::Internal,
                parent_span_id: parent.map_or(SpanId::INVALID, |p| p.span_id),
                parent_is_remote: false,
                start: SystemTime::now(),
                attributes: Vec::with_capacity(attrs.fields().len()),
                events: Vec::new(),
                status: Status::Unset,
            };
            attrs.record(&mut recording);
            extensions.replace(recording);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(recording) = span.extensions_mut().get_mut::<Recording>()
        {
            values.record(recording);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        let Some(recording) = extensions.get_mut::<Recording>() else {
            return;
        };
        let meta = event.metadata();
        let mut fields = EventFields {
            name: None,
            attributes: vec![KeyValue::new("level", meta.level().as_str())],
        };
        event.record(&mut fields);
        if *meta.level() == tracing::Level::ERROR {
            recording.status = Status::error(fields.name.clone().unwrap_or_default());
        }
        recording.events.push(Event::new(
            fields.name.unwrap_or_else(|| meta.name().to_string()),
            SystemTime::now(),
            fields.attributes,
            0,
        ));
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let mut extensions = span.extensions_mut();
        let (Some(recording), Some(ids)) = (
            extensions.remove::<Recording>(),
            extensions.get_mut::<SpanIds>().copied(),
        ) else {
            return;
        };
        drop(extensions);
        if ids.sampled {
            self.queue.push(&recording.into_span_data(ids, &self.scope));
        }
    }
}

/// Make the caller's trace (`traceparent`: trace id, parent span id,
/// sampled flag) the parent of `span`, a root just created: its trace id
/// and sampling become the caller's. Call it before the span has children.
pub fn join_caller_trace(span: &tracing::Span, trace_id: TraceId, parent: SpanId, sampled: bool) {
    with_registry_span(span, |span| {
        let mut extensions = span.extensions_mut();
        if let Some(ids) = extensions.get_mut::<SpanIds>() {
            ids.trace_id = trace_id;
            ids.sampled = sampled;
        }
        if let Some(recording) = extensions.get_mut::<Recording>() {
            recording.parent_span_id = parent;
            recording.parent_is_remote = true;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::otlp_traces::Encoder;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;
    use tracing_subscriber::prelude::*;

    /// The spans a subscriber with the recorder (at `ratio`) queues while
    /// `f` runs, as a collector decodes them.
    fn recorded(ratio: f64, f: impl FnOnce()) -> Vec<Span> {
        let queue = Arc::new(SpanQueue::default());
        let subscriber =
            tracing_subscriber::registry().with(SpanRecorder::new(ratio, queue.clone()));
        tracing::subscriber::with_default(subscriber, f);
        let encoder = Encoder::new(&opentelemetry_sdk::Resource::builder_empty().build());
        let mut spans = Vec::new();
        for batch in queue.take() {
            let body = encoder.request(&scope(), &batch);
            let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
            for resource in request.resource_spans {
                for scope in resource.scope_spans {
                    assert_eq!(scope.scope.expect("a scope").name, "lianqiao");
                    spans.extend(scope.spans);
                }
            }
        }
        spans
    }

    /// `span`'s attributes as (key, value) pairs.
    fn attributes(span: &Span) -> Vec<(&str, Any)> {
        span.attributes
            .iter()
            .map(|kv| {
                let value = kv.value.as_ref().and_then(|v| v.value.clone());
                (kv.key.as_str(), value.expect("a value"))
            })
            .collect()
    }

    const SAMPLED: u32 = 0x01;
    const PARENT_IS_REMOTE: u32 = 0x200;

    #[test]
    fn a_tree_of_spans_keeps_its_parents_fields_and_events() {
        let spans = recorded(1.0, || {
            let request = tracing::info_span!(
                "request",
                otel.name = "GET /v1/{resource}",
                otel.kind = "server",
                rows = tracing::field::Empty
            );
            request.in_scope(|| {
                let source = tracing::info_span!("source", source = "huimin", ok = true);
                source.in_scope(|| tracing::error!(code = "plugin_trap", "the plugin trapped"));
                tracing::info_span!(parent: &source, "host.sql", ms = 1.5).in_scope(|| {});
            });
            request.record("rows", 2u64);
        });
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["host.sql", "source", "GET /v1/{resource}"]);
        let (sql, source, request) = (&spans[0], &spans[1], &spans[2]);
        assert!(spans.iter().all(|s| s.trace_id == request.trace_id));
        assert!(spans.iter().all(|s| s.flags & SAMPLED != 0));
        assert!(request.parent_span_id.is_empty(), "the root has no parent");
        assert_eq!(source.parent_span_id, request.span_id);
        assert_eq!(sql.parent_span_id, source.span_id);
        assert_eq!(request.kind, 2, "server");
        assert_eq!(source.kind, 1, "internal");
        assert_eq!(attributes(request), [("rows", Any::IntValue(2))]);
        assert_eq!(
            attributes(source),
            [
                ("source", Any::StringValue("huimin".into())),
                ("ok", Any::BoolValue(true))
            ]
        );
        assert_eq!(attributes(sql), [("ms", Any::DoubleValue(1.5))]);
        let status = source.status.as_ref().expect("a status");
        assert_eq!(
            (status.code, status.message.as_str()),
            (2, "the plugin trapped")
        );
        assert_eq!(source.events.len(), 1);
        assert_eq!(source.events[0].name, "the plugin trapped");
        assert!(
            source.events[0]
                .attributes
                .iter()
                .any(|kv| kv.key == "code")
        );
        assert!(request.start_time_unix_nano <= source.start_time_unix_nano);
        assert!(source.end_time_unix_nano <= request.end_time_unix_nano);
    }

    #[test]
    fn sampling_is_decided_at_the_root_for_the_whole_trace() {
        assert!(
            recorded(0.0, || {
                tracing::info_span!("request")
                    .in_scope(|| tracing::info_span!("source").in_scope(|| {}))
            })
            .is_empty()
        );
        // At 0.5, about half of the traces, each whole or not at all.
        let spans = recorded(0.5, || {
            for _ in 0..400 {
                tracing::info_span!("request")
                    .in_scope(|| tracing::info_span!("source").in_scope(|| {}));
            }
        });
        let roots: Vec<&Span> = spans.iter().filter(|s| s.name == "request").collect();
        assert!(
            (120..=280).contains(&roots.len()),
            "{} of 400 sampled",
            roots.len()
        );
        assert_eq!(spans.len(), 2 * roots.len(), "children follow their root");
        assert!(
            spans
                .iter()
                .all(|s| roots.iter().any(|r| r.trace_id == s.trace_id))
        );
        // The SDK's rule: the low 63 bits of the trace id against the ratio.
        let recorder = SpanRecorder::new(0.25, Arc::default());
        assert!(recorder.samples(TraceId::from(0x0000_0000_0000_0000_3fff_ffff_ffff_fffeu128)));
        assert!(!recorder.samples(TraceId::from(0x0000_0000_0000_0000_4000_0000_0000_0000u128)));
    }

    #[test]
    fn a_caller_trace_sets_the_trace_id_parent_and_sampling() {
        let caller = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let parent = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        let spans = recorded(0.0, || {
            let request = tracing::info_span!("request");
            join_caller_trace(&request, caller, parent, true);
            request.in_scope(|| {
                let ids = SpanIds::of(&tracing::Span::current()).unwrap();
                assert_eq!((ids.trace_id, ids.sampled), (caller, true));
                tracing::info_span!("source").in_scope(|| {});
            });
        });
        assert_eq!(spans.len(), 2, "the caller's flag overrides ratio 0");
        assert!(spans.iter().all(|s| s.trace_id == caller.to_bytes()));
        assert_eq!(spans[1].parent_span_id, parent.to_bytes());
        assert!(spans[1].flags & PARENT_IS_REMOTE != 0);
        assert!(spans[0].flags & PARENT_IS_REMOTE == 0);
        // A caller that did not sample: nothing, whatever the ratio.
        let spans = recorded(1.0, || {
            let request = tracing::info_span!("request");
            join_caller_trace(&request, caller, parent, false);
            request.in_scope(|| tracing::info_span!("source").in_scope(|| {}));
        });
        assert!(spans.is_empty());
    }
}
