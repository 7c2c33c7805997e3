//! Finished spans as one OTLP/HTTP protobuf `ExportTraceServiceRequest`,
//! written straight from the SDK's `SpanData`.
//!
//! Why not the `opentelemetry-otlp` exporter: it first converts every span
//! into `prost` structs (a heap allocation per id, attribute key and string
//! value, the scope hashed per span) and then encodes those, about 10,000
//! instructions per span; at 13 spans a request that was half of what
//! exporting every span costs (`cargo xtask bench 50 instructions`). The
//! wire format is simple enough to write directly; the tests check that a
//! decoder reads back exactly what the upstream conversion produces.

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// OTLP span flags: the "is the parent remote" bit is known (0x100), and
/// set (0x200) when it is.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Encodes batches of spans for one resource (the gateway's service).
pub struct Encoder {
    /// The `ResourceSpans.resource` field, encoded once.
    resource: Vec<u8>,
    schema_url: String,
}

impl Encoder {
    pub fn new(resource: &Resource) -> Encoder {
        let mut encoded = Vec::new();
        nested(&mut encoded, 1, |out| {
            for (key, value) in resource.iter() {
                key_value(out, 1, key.as_str(), value);
            }
        });
        Encoder {
            resource: encoded,
            schema_url: resource.schema_url().unwrap_or_default().to_string(),
        }
    }

    /// The body of a POST to `/v1/traces` for spans of one `scope`, each
    /// already written by `encode_span` (so spans can be encoded as they
    /// finish and kept as bytes until they are sent).
    pub fn request(&self, scope: &InstrumentationScope, encoded_spans: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(encoded_spans.len() + self.resource.len() + 64);
        nested(&mut out, 1, |out| {
            out.extend_from_slice(&self.resource);
            scope_spans(out, scope, encoded_spans);
            string(out, 3, &self.schema_url);
        });
        out
    }
}

/// `span` as one entry of a `ScopeSpans.spans`, appended to `out`.
pub fn encode_span(out: &mut Vec<u8>, span: &SpanData) {
    nested(out, 2, |out| self::span(out, span));
}

/// One `ScopeSpans`: the scope and its encoded spans.
fn scope_spans(out: &mut Vec<u8>, scope: &InstrumentationScope, encoded_spans: &[u8]) {
    nested(out, 2, |out| {
        nested(out, 1, |out| instrumentation_scope(out, scope));
        out.extend_from_slice(encoded_spans);
        string(out, 3, scope.schema_url().unwrap_or_default());
    });
}

fn instrumentation_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    string(out, 1, scope.name());
    string(out, 2, scope.version().unwrap_or_default());
    for kv in scope.attributes() {
        key_value(out, 3, kv.key.as_str(), &kv.value);
    }
}

fn span(out: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    bytes(out, 1, &context.trace_id().to_bytes());
    bytes(out, 2, &context.span_id().to_bytes());
    trace_state(out, 3, context.trace_state());
    if span.parent_span_id != SpanId::INVALID {
        bytes(out, 4, &span.parent_span_id.to_bytes());
    }
    string(out, 5, &span.name);
    uint(out, 6, span_kind(&span.span_kind));
    fixed64(out, 7, nanos(span.start_time));
    fixed64(out, 8, nanos(span.end_time));
    for kv in &span.attributes {
        key_value(out, 9, kv.key.as_str(), &kv.value);
    }
    uint(out, 10, span.dropped_attributes_count.into());
    for event in span.events.iter() {
        nested(out, 11, |out| {
            fixed64(out, 1, nanos(event.timestamp));
            string(out, 2, &event.name);
            for kv in &event.attributes {
                key_value(out, 3, kv.key.as_str(), &kv.value);
            }
            uint(out, 4, event.dropped_attributes_count.into());
        });
    }
    uint(out, 12, span.events.dropped_count.into());
    for link in span.links.iter() {
        nested(out, 13, |out| {
            let linked = &link.span_context;
            bytes(out, 1, &linked.trace_id().to_bytes());
            bytes(out, 2, &linked.span_id().to_bytes());
            trace_state(out, 3, linked.trace_state());
            for kv in &link.attributes {
                key_value(out, 4, kv.key.as_str(), &kv.value);
            }
            uint(out, 5, link.dropped_attributes_count.into());
            fixed32(
                out,
                6,
                flags(linked.is_remote(), linked.trace_flags().to_u8()),
            );
        });
    }
    uint(out, 14, span.links.dropped_count.into());
    // Always present (an empty message when unset), as upstream sends it.
    nested(out, 15, |out| match &span.status {
        Status::Unset => {}
        Status::Ok => uint(out, 3, 1),
        Status::Error { description } => {
            string(out, 2, description);
            uint(out, 3, 2);
        }
    });
    fixed32(
        out,
        16,
        flags(span.parent_span_is_remote, context.trace_flags().to_u8()),
    );
}

fn flags(remote: bool, trace_flags: u8) -> u32 {
    u32::from(trace_flags) | HAS_IS_REMOTE | if remote { IS_REMOTE } else { 0 }
}

fn span_kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn nanos(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

fn trace_state(out: &mut Vec<u8>, field: u32, state: &opentelemetry::trace::TraceState) {
    // Most spans carry none; `header()` would allocate an empty string.
    if *state != opentelemetry::trace::TraceState::NONE {
        string(out, field, &state.header());
    }
}

fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: &Value) {
    nested(out, field, |out| {
        string(out, 1, key);
        nested(out, 2, |out| any_value(out, value));
    });
}

/// One `AnyValue`'s `oneof` field. Always written, even when it holds a
/// default (0, false, ""), so a decoder knows which kind it is.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => string_always(out, 1, s.as_str()),
        Value::Bool(b) => varint_field(out, 2, u64::from(*b)),
        Value::I64(i) => varint_field(out, 3, *i as u64),
        Value::F64(f) => double(out, 4, *f),
        // `ArrayValue { values: [AnyValue] }`, one element at a time.
        Value::Array(array) => nested(out, 5, |out| match array {
            Array::Bool(v) => {
                for b in v {
                    nested(out, 1, |out| varint_field(out, 2, u64::from(*b)));
                }
            }
            Array::I64(v) => {
                for i in v {
                    nested(out, 1, |out| varint_field(out, 3, *i as u64));
                }
            }
            Array::F64(v) => {
                for f in v {
                    nested(out, 1, |out| double(out, 4, *f));
                }
            }
            Array::String(v) => {
                for s in v {
                    nested(out, 1, |out| string_always(out, 1, s.as_str()));
                }
            }
            // A kind of array newer than this encoder: its text.
            other => nested(out, 1, |out| string_always(out, 1, &other.to_string())),
        }),
        // A kind of value newer than this encoder: its text.
        other => string_always(out, 1, &other.as_str()),
    }
}

fn tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn varint(out: &mut Vec<u8>, v: u64) {
    let (bytes, n) = varint_bytes(v);
    out.extend_from_slice(&bytes[..n]);
}

/// `v` as a protobuf varint: the bytes and how many of them are used.
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        bytes[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    (bytes, n + 1)
}

fn double(out: &mut Vec<u8>, field: u32, f: f64) {
    tag(out, field, FIXED64);
    out.extend_from_slice(&f.to_le_bytes());
}

fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    tag(out, field, VARINT);
    varint(out, v);
}

/// A proto3 scalar: left out when it is the default (0).
fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        varint_field(out, field, v);
    }
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        tag(out, field, FIXED32);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    if !b.is_empty() {
        string_bytes(out, field, b);
    }
}

fn string(out: &mut Vec<u8>, field: u32, s: &str) {
    bytes(out, field, s.as_bytes());
}

fn string_always(out: &mut Vec<u8>, field: u32, s: &str) {
    string_bytes(out, field, s.as_bytes());
}

fn string_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A length-delimited sub-message written by `body`. One byte is reserved
/// for its length; a longer body (128 bytes or more) moves over once to
/// make room, which costs less than measuring every message beforehand.
fn nested(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(out, field, LEN);
    let at = out.len();
    out.push(0);
    body(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let (prefix, n) = varint_bytes(len as u64);
        out.splice(at..at + 1, prefix[..n].iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Event, Link, SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use proptest::prelude::*;
    use prost::Message;
    use std::time::{Duration, UNIX_EPOCH};

    /// What a decoder reads from our bytes equals what the upstream
    /// conversion (the one `opentelemetry-otlp` sends) produces. Ours are
    /// made as the span queue makes them: each span encoded on its own,
    /// then one request per scope (in order of first appearance), whose
    /// `ScopeSpans` are read back together.
    fn assert_same_as_upstream(resource: &Resource, spans: Vec<SpanData>) {
        let encoder = Encoder::new(resource);
        let mut scopes: Vec<(&InstrumentationScope, Vec<u8>)> = Vec::new();
        for span in &spans {
            let at = match scopes
                .iter()
                .position(|(scope, _)| *scope == &span.instrumentation_scope)
            {
                Some(at) => at,
                None => {
                    scopes.push((&span.instrumentation_scope, Vec::new()));
                    scopes.len() - 1
                }
            };
            encode_span(&mut scopes[at].1, span);
        }
        let mut decoded: Option<ExportTraceServiceRequest> = None;
        for (scope, encoded) in &scopes {
            let body = encoder.request(scope, encoded);
            let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("decodes");
            match &mut decoded {
                None => decoded = Some(request),
                Some(all) => all.resource_spans[0].scope_spans.extend(
                    request
                        .resource_spans
                        .into_iter()
                        .flat_map(|r| r.scope_spans),
                ),
            }
        }
        let decoded = decoded.expect("at least one span");
        let upstream = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        };
        assert_eq!(decoded, upstream);
    }

    fn context(trace: u128, span: u64, sampled: bool, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace.max(1)),
            SpanId::from(span.max(1)),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            remote,
            TraceState::NONE,
        )
    }

    fn request_span(parent: u64) -> SpanData {
        SpanData {
            span_context: context(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736, 7, true, false),
            parent_span_id: SpanId::from(parent),
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: "GET /v1/{resource}".into(),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_764_633_600_123_456_789),
            end_time: UNIX_EPOCH + Duration::from_nanos(1_764_633_600_126_000_000),
            attributes: vec![
                KeyValue::new("http.route", "/v1/{resource}"),
                KeyValue::new("http.response.status_code", 200),
                KeyValue::new("lianqiao.division", "150103"),
                KeyValue::new("lianqiao.masked", 0),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("lianqiao").build(),
        }
    }

    #[test]
    fn a_request_span_reads_back_as_upstream_encodes_it() {
        let resource = Resource::builder().with_service_name("lianqiao").build();
        assert_same_as_upstream(
            &resource,
            vec![request_span(0), request_span(0x00f0_67aa_0ba9_02b7)],
        );
    }

    #[test]
    fn a_long_attribute_moves_the_message_to_a_longer_length_prefix() {
        let resource = Resource::builder().with_service_name("lianqiao").build();
        let mut span = request_span(0);
        // 200 bytes (2-byte length), 20,000 (3 bytes): both decode.
        span.attributes
            .push(KeyValue::new("db.query.text", "x".repeat(200)));
        span.attributes
            .push(KeyValue::new("db.query.plan", "网格".repeat(3400)));
        assert_same_as_upstream(&resource, vec![span]);
    }

    fn value() -> impl Strategy<Value = Value> {
        let finite = any::<f64>().prop_filter("NaN never equals itself", |f| !f.is_nan());
        prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::I64),
            finite.clone().prop_map(Value::F64),
            ".{0,40}".prop_map(|s| Value::String(s.into())),
            proptest::collection::vec(any::<bool>(), 0..4).prop_map(|v| Value::Array(v.into())),
            proptest::collection::vec(any::<i64>(), 0..4).prop_map(|v| Value::Array(v.into())),
            proptest::collection::vec(finite, 0..4).prop_map(|v| Value::Array(v.into())),
            proptest::collection::vec("[a-z网格]{0,12}", 0..4).prop_map(|v| Value::Array(
                v.into_iter()
                    .map(Into::into)
                    .collect::<Vec<opentelemetry::StringValue>>()
                    .into()
            )),
        ]
    }

    fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec(
            ("[a-z._]{0,24}", value()).prop_map(|(k, v)| KeyValue::new(k, v)),
            0..8,
        )
    }

    fn kind() -> impl Strategy<Value = SpanKind> {
        prop_oneof![
            Just(SpanKind::Internal),
            Just(SpanKind::Server),
            Just(SpanKind::Client),
            Just(SpanKind::Producer),
            Just(SpanKind::Consumer),
        ]
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            Just(Status::Unset),
            Just(Status::Ok),
            ".{0,30}".prop_map(Status::error),
        ]
    }

    prop_compose! {
        fn any_span()(
            ids in (any::<u128>(), any::<u64>(), any::<u64>(), any::<bool>(), any::<bool>()),
            name in ".{0,30}",
            kind in kind(),
            times in (any::<u64>(), any::<u32>()),
            attributes in attributes(),
            dropped in (0u32..3, 0u32..3, 0u32..3),
            events in proptest::collection::vec((".{0,10}", any::<u32>(), attributes(), 0u32..2), 0..3),
            links in proptest::collection::vec((any::<u128>(), any::<u64>(), any::<bool>(), any::<bool>(), attributes()), 0..3),
            status in status(),
            scope in prop_oneof![Just(("lianqiao", None)), Just(("lianqiao.plugins", Some("0.1.0")))],
        ) -> SpanData {
            let (trace, span, parent, sampled, remote) = ids;
            let start = UNIX_EPOCH + Duration::from_nanos(times.0 >> 2);
            let mut builder = InstrumentationScope::builder(scope.0);
            if let Some(version) = scope.1 {
                builder = builder.with_version(version);
            }
            let mut span_events = SpanEvents::default();
            span_events.events = events
                .into_iter()
                .map(|(name, at, attributes, dropped)| {
                    Event::new(name, start + Duration::from_nanos(at.into()), attributes, dropped)
                })
                .collect();
            span_events.dropped_count = dropped.1;
            let mut span_links = SpanLinks::default();
            span_links.links = links
                .into_iter()
                .map(|(t, s, sampled, remote, attributes)| {
                    Link::new(context(t, s, sampled, remote), attributes, 0)
                })
                .collect();
            span_links.dropped_count = dropped.2;
            SpanData {
                span_context: context(trace, span, sampled, false),
                parent_span_id: SpanId::from(parent),
                parent_span_is_remote: remote,
                span_kind: kind,
                name: name.into(),
                start_time: start,
                end_time: start + Duration::from_nanos(times.1.into()),
                attributes,
                dropped_attributes_count: dropped.0,
                events: span_events,
                links: span_links,
                status,
                instrumentation_scope: builder.build(),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_batch_reads_back_as_upstream_encodes_it(
            spans in proptest::collection::vec(any_span(), 1..6),
        ) {
            let resource = Resource::builder()
                .with_service_name("lianqiao")
                .with_attribute(KeyValue::new("deployment.environment", "呼和浩特"))
                .build();
            assert_same_as_upstream(&resource, spans);
        }
    }
}
