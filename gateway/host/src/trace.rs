//! W3C trace context carried from a caller's request into every upstream
//! request a plugin makes for it, so one request can be followed across
//! systems. The host adds the header; plugins neither see nor forge it.

use opentelemetry::trace::{SpanId, TraceId};
use rand::RngCore;
use tracing_subscriber::registry::LookupSpan as _;

tokio::task_local! {
    /// The trace the current request belongs to. Plugin calls of a request
    /// run in its task, so the host reads it when it starts a call.
    pub static TRACE_CONTEXT: TraceContext;
}

/// The parts of a `traceparent` that outlive one hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 2 hex digits (`01` = sampled).
    pub flags: String,
}

/// The OpenTelemetry identity of a `tracing` span. When spans are exported,
/// the gateway's span recorder keeps one in every span's extensions
/// (sampled or not, so log lines and upstream requests can name the trace);
/// otherwise spans have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Whether the trace is sampled (its spans are exported).
    pub sampled: bool,
}

impl SpanIds {
    /// The ids of `span`, if spans are exported and it is enabled.
    pub fn of(span: &tracing::Span) -> Option<SpanIds> {
        with_registry_span(span, |s| s.extensions().get::<SpanIds>().copied()).flatten()
    }
}

/// `f` on the registry's record of `span` (its extensions), if the current
/// subscriber is built on a `tracing_subscriber::Registry` and the span is
/// enabled.
pub fn with_registry_span<R>(
    span: &tracing::Span,
    f: impl FnOnce(tracing_subscriber::registry::SpanRef<'_, tracing_subscriber::Registry>) -> R,
) -> Option<R> {
    let id = span.id()?;
    // `get_default` takes an `FnMut`; it calls it once.
    let mut f = Some(f);
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let span = registry.span(&id)?;
        f.take().map(|f| f(span))
    })
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceContext {
    /// From a caller's `traceparent` (version 00), if it is well formed and
    /// not all zeros.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace_id, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let valid = version == "00"
            && parts.next().is_none()
            && is_hex(trace_id, 32)
            && trace_id.bytes().any(|b| b != b'0')
            && is_hex(parent, 16)
            && parent.bytes().any(|b| b != b'0')
            && is_hex(flags, 2);
        valid.then(|| TraceContext {
            trace_id: trace_id.to_string(),
            flags: flags.to_string(),
        })
    }

    /// A new trace, for requests that arrive without one.
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: random_hex(16),
            flags: "01".into(),
        }
    }

    /// The `traceparent` of one outgoing request: same trace, new span.
    pub fn child_header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, random_hex(8), self.flags)
    }

    /// The `traceparent` of an outgoing request made inside the current
    /// `tracing` span: when spans are exported (OpenTelemetry), its parent
    /// is that span, so the upstream's spans hang under the host call that
    /// made the request; otherwise a fresh span id in the same trace.
    pub fn outgoing_header(&self) -> String {
        match SpanIds::of(&tracing::Span::current()) {
            Some(ids) if TraceId::from_hex(&self.trace_id) == Ok(ids.trace_id) => {
                format!("00-{}-{}-{}", self.trace_id, ids.span_id, self.flags)
            }
            _ => self.child_header(),
        }
    }

    /// The context of the current task, if any.
    pub fn current() -> Option<TraceContext> {
        TRACE_CONTEXT.try_with(Clone::clone).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_w3c_and_refuses_malformed() {
        let t =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = t.child_header();
        assert!(
            child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && child.ends_with("-01")
        );
        assert_ne!(child, t.child_header(), "a new span id per request");
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }
}
