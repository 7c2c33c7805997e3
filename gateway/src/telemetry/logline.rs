//! JSON log lines: one object per event, and nothing done for spans.
//!
//! Why not `tracing-subscriber`'s JSON formatter: it serialises every
//! span's fields to JSON when the span opens and, on every `record`, parses
//! that JSON back, merges and serialises it again, for spans whose fields
//! are almost never printed (only events inside them would show them).
//! Callgrind put that at ~270k instructions per request, most of what
//! metrics and the access log cost together (BENCHMARKS.md). Here a span
//! costs one field comparison when it records: the request span's
//! `trace_id` is kept, and each event carries the trace id and the name of
//! the span it is in.
//!
//! A line: `timestamp` (RFC 3339, UTC, ms), `level`, the event's fields
//! (`message` among them), `target`, `span` and `trace_id` when written
//! inside a request, and `span_id` (the exported span's) when spans are
//! exported. The access line names its own `trace_id` and `span_id`.

use std::fmt::Write as _;
use std::io::Write as _;

use lianqiao_host::trace::SpanIds;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The layer; `writer` gets one whole line per event.
pub struct JsonLines<W> {
    writer: W,
    /// Whether spans are exported (then lines get the exported span's id).
    exported_spans: bool,
}

impl<W> JsonLines<W> {
    pub fn new(writer: W, exported_spans: bool) -> Self {
        JsonLines {
            writer,
            exported_spans,
        }
    }
}

/// The trace id a span recorded, kept in its extensions.
struct TraceId(String);

/// Picks `trace_id` out of a span's fields and ignores the rest.
#[derive(Default)]
struct FindTraceId(Option<String>);

impl Visit for FindTraceId {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "trace_id" && !value.is_empty() {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "trace_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().fields().field("trace_id").is_some() {
            self.keep_trace_id(id, &ctx, |v| attrs.record(v));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        // Only the fields being recorded are visited: a name comparison each.
        self.keep_trace_id(id, &ctx, |v| values.record(v));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Line::start(meta.level());
        event.record(&mut line);
        line.key("target");
        line.string(meta.target());
        if let Some(scope) = ctx.event_scope(event) {
            let mut spans = scope.into_iter();
            if let Some(innermost) = spans.next() {
                line.key("span");
                line.string(innermost.name());
                let span_id = self
                    .exported_spans
                    .then(|| {
                        innermost
                            .extensions()
                            .get::<SpanIds>()
                            .map(|ids| ids.span_id)
                    })
                    .flatten();
                let trace_id = std::iter::once(innermost)
                    .chain(spans)
                    .find_map(|s| s.extensions().get::<TraceId>().map(|t| t.0.clone()));
                if !line.has("trace_id")
                    && let Some(trace_id) = trace_id
                {
                    line.key("trace_id");
                    line.string(&trace_id);
                }
                if !line.has("span_id")
                    && let Some(span_id) = span_id
                {
                    line.key("span_id");
                    line.string(&span_id.to_string());
                }
            }
        }
        let bytes = line.finish();
        // A log line that cannot be written is not worth failing a request
        // over (the batched writer only appends to memory here).
        let _ = self.writer.make_writer_for(meta).write_all(&bytes);
    }
}

impl<W> JsonLines<W> {
    fn keep_trace_id<S>(&self, id: &Id, ctx: &Context<'_, S>, record: impl FnOnce(&mut FindTraceId))
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let mut found = FindTraceId::default();
        record(&mut found);
        if let (Some(trace_id), Some(span)) = (found.0, ctx.span(id)) {
            span.extensions_mut().replace(TraceId(trace_id));
        }
    }
}

/// One JSON object being written.
struct Line {
    buf: String,
    keys: Vec<&'static str>,
}

impl Line {
    fn start(level: &tracing::Level) -> Self {
        let mut line = Line {
            buf: String::with_capacity(320),
            keys: Vec::new(),
        };
        line.buf.push_str("{\"timestamp\":\"");
        line.buf
            .push_str(&crate::telemetry::rfc3339(std::time::SystemTime::now()));
        line.buf.push_str("\",\"level\":\"");
        line.buf.push_str(level.as_str());
        line.buf.push('"');
        line
    }

    fn has(&self, key: &str) -> bool {
        self.keys.contains(&key)
    }

    fn key(&mut self, key: &str) {
        self.buf.push(',');
        self.string(key);
        self.buf.push(':');
    }

    fn field(&mut self, field: &Field) -> bool {
        // An event that repeats a key keeps the first value: a line must
        // stay one valid JSON object.
        if self.has(field.name()) {
            return false;
        }
        self.keys.push(field.name());
        self.key(field.name());
        true
    }

    /// A JSON string, escaped as RFC 8259 requires.
    fn string(&mut self, s: &str) {
        self.buf.push('"');
        for c in s.chars() {
            match c {
                '"' => self.buf.push_str("\\\""),
                '\\' => self.buf.push_str("\\\\"),
                '\n' => self.buf.push_str("\\n"),
                '\r' => self.buf.push_str("\\r"),
                '\t' => self.buf.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.buf, "\\u{:04x}", c as u32);
                }
                c => self.buf.push(c),
            }
        }
        self.buf.push('"');
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.push_str("}\n");
        self.buf.into_bytes()
    }
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.field(field) {
            self.string(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.field(field) {
            let _ = write!(self.buf, "{value}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.field(field) {
            let _ = write!(self.buf, "{value}");
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.field(field) {
            if value.is_finite() {
                let _ = write!(self.buf, "{value}");
            } else {
                // JSON has no NaN or infinity.
                self.string(&value.to_string());
            }
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.field(field) {
            self.buf.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.field(field) {
            self.string(&value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.field(field) {
            // `message` and `%display` fields arrive here already formatted.
            self.string(&format!("{value:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    fn lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        use crate::telemetry::logwriter::{BatchedWriter, tests::Out, tests::written};
        let out = Out::default();
        let (writer, guard) = BatchedWriter::start(out.clone());
        let subscriber = tracing_subscriber::registry().with(JsonLines::new(writer, false));
        tracing::subscriber::with_default(subscriber, f);
        drop(guard);
        written(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    #[test]
    fn an_event_is_one_json_object_with_its_fields_typed() {
        let got = lines(|| {
            tracing::warn!(
                target: "lianqiao::test",
                status = 502u64,
                delta = -3i64,
                ms = 2.5,
                ok = false,
                name = "回民区 \"quoted\"\n\t\u{1}",
                "source failed"
            );
        });
        assert_eq!(got.len(), 1);
        let line = &got[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "lianqiao::test");
        assert_eq!(line["message"], "source failed");
        assert_eq!(line["status"], 502);
        assert_eq!(line["delta"], -3);
        assert_eq!(line["ms"], 2.5);
        assert_eq!(line["ok"], false);
        assert_eq!(line["name"], "回民区 \"quoted\"\n\t\u{1}");
        let ts = line["timestamp"].as_str().expect("timestamp");
        assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
        assert!(line.get("trace_id").is_none(), "outside a request: {line}");
    }

    #[test]
    fn an_event_inside_a_request_carries_its_trace_id_and_span() {
        let got = lines(|| {
            let request = tracing::info_span!("request", trace_id = tracing::field::Empty);
            request.record("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
            let _r = request.enter();
            let source = tracing::info_span!("source", source = "huimin");
            let _s = source.enter();
            tracing::error!(code = "source_timeout", "source failed");
            // An event naming its own trace id keeps it (and stays valid JSON).
            tracing::info!(trace_id = "00000000000000000000000000000001", "own");
        });
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(got[0]["span"], "source");
        assert_eq!(got[0]["code"], "source_timeout");
        assert_eq!(got[1]["trace_id"], "00000000000000000000000000000001");
    }

    #[test]
    fn with_exported_spans_a_line_names_the_span_it_was_written_in() {
        use crate::telemetry::logwriter::{BatchedWriter, tests::Out, tests::written};
        use crate::telemetry::spans::SpanRecorder;
        let out = Out::default();
        let (writer, guard) = BatchedWriter::start(out.clone());
        let recorder = SpanRecorder::new(1.0, std::sync::Arc::default());
        let subscriber = tracing_subscriber::registry()
            .with(recorder)
            .with(JsonLines::new(writer, true));
        let ids = tracing::subscriber::with_default(subscriber, || {
            let source = tracing::info_span!("source", source = "huimin");
            let _s = source.enter();
            tracing::warn!("slow");
            SpanIds::of(&source).expect("the recorder gives every span ids")
        });
        drop(guard);
        let line: serde_json::Value =
            serde_json::from_str(written(&out).trim()).expect("one JSON line");
        assert_eq!(line["span"], "source");
        assert_eq!(line["span_id"], ids.span_id.to_string());
    }

    #[test]
    fn non_finite_numbers_stay_valid_json() {
        let got = lines(|| tracing::info!(ratio = f64::NAN, "odd"));
        assert_eq!(got[0]["ratio"], "NaN");
    }
}
