//! Metrics kept in process and rendered as Prometheus text on the admin
//! listener (`/metrics`). Counters and fixed-bucket histograms, labelled
//! only by route, source, status and code — never by anything a caller
//! sends, so cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets, seconds: 1 ms … 10 s.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{bound}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    /// (route, status) → requests
    requests: BTreeMap<(String, u16), u64>,
    request_seconds: BTreeMap<String, Histogram>,
    /// (source, status, code) → calls
    source_calls: BTreeMap<(String, String, String), u64>,
    source_seconds: BTreeMap<String, Histogram>,
    /// The last calls of each source: (latency, failed).
    recent: BTreeMap<String, std::collections::VecDeque<(Duration, bool)>>,
}

/// A source's state at scrape time.
#[derive(Debug, Clone)]
pub struct SourceState {
    pub name: String,
    pub breaker: &'static str,
    pub instantiations: u64,
    pub instantiate_seconds: f64,
    pub in_use: i64,
    pub memory_peak_bytes: u64,
    pub memory_limit_hits: u64,
}

/// The audit trail's state, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct AuditState {
    pub written: u64,
    pub queue_depth: usize,
}

/// How a source has done lately, for `/readyz` and `lianqiao status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    pub calls: usize,
    pub failures: usize,
    pub median: Duration,
}

/// Calls remembered per source for `Recent`.
const RECENT: usize = 64;

/// The gateway's metrics.
#[derive(Default)]
pub struct Metrics(Mutex<Inner>, PolicyCounters);

/// What the policy and the audit trail did.
#[derive(Default)]
struct PolicyCounters {
    unauthenticated: AtomicU64,
    forbidden: AtomicU64,
    masked_cells: AtomicU64,
    withheld_fields: AtomicU64,
    audit_failures: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

/// Label values are ours (route templates, source names, codes), but
/// escape anyway so the text format can never break.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// A request refused: `unauthenticated` or `forbidden`.
    pub fn record_denial(&self, kind: &str) {
        let c = if kind == "unauthenticated" {
            &self.1.unauthenticated
        } else {
            &self.1.forbidden
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_masked(&self, cells: u64, withheld_fields: u64) {
        self.1.masked_cells.fetch_add(cells, Ordering::Relaxed);
        self.1
            .withheld_fields
            .fetch_add(withheld_fields, Ordering::Relaxed);
    }

    pub fn record_audit_failure(&self) {
        self.1.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    fn render_policy(&self, out: &mut String) {
        let p = &self.1;
        let _ = write!(
            out,
            "# HELP lianqiao_policy_denials_total Requests refused by authentication or policy.\n# TYPE lianqiao_policy_denials_total counter\n\
             lianqiao_policy_denials_total{{kind=\"unauthenticated\"}} {}\n\
             lianqiao_policy_denials_total{{kind=\"forbidden\"}} {}\n\
             # HELP lianqiao_policy_masked_cells_total Cells masked in responses.\n# TYPE lianqiao_policy_masked_cells_total counter\n\
             lianqiao_policy_masked_cells_total {}\n\
             # HELP lianqiao_policy_withheld_fields_total Fields withheld from responses (per response).\n# TYPE lianqiao_policy_withheld_fields_total counter\n\
             lianqiao_policy_withheld_fields_total {}\n\
             # HELP lianqiao_audit_failures_total Audit records that could not be written.\n# TYPE lianqiao_audit_failures_total counter\n\
             lianqiao_audit_failures_total {}\n",
            p.unauthenticated.load(Ordering::Relaxed),
            p.forbidden.load(Ordering::Relaxed),
            p.masked_cells.load(Ordering::Relaxed),
            p.withheld_fields.load(Ordering::Relaxed),
            p.audit_failures.load(Ordering::Relaxed),
        );
    }

    pub fn record_request(&self, route: &str, status: u16, latency: Duration) {
        if let Ok(mut m) = self.0.lock() {
            *m.requests.entry((route.to_string(), status)).or_default() += 1;
            m.request_seconds
                .entry(route.to_string())
                .or_default()
                .observe(latency.as_secs_f64());
        }
    }

    pub fn record_source(&self, source: &str, status: &str, code: &str, latency: Duration) {
        if let Ok(mut m) = self.0.lock() {
            *m.source_calls
                .entry((source.to_string(), status.to_string(), code.to_string()))
                .or_default() += 1;
            m.source_seconds
                .entry(source.to_string())
                .or_default()
                .observe(latency.as_secs_f64());
            if status != "skipped" {
                let recent = m.recent.entry(source.to_string()).or_default();
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back((latency, status != "ok"));
            }
        }
    }

    /// The last calls of `source` (up to 64), if any.
    pub fn recent(&self, source: &str) -> Option<Recent> {
        let m = self.0.lock().ok()?;
        let calls = m.recent.get(source)?;
        let mut latencies: Vec<Duration> = calls.iter().map(|(l, _)| *l).collect();
        latencies.sort();
        Some(Recent {
            calls: calls.len(),
            failures: calls.iter().filter(|(_, failed)| *failed).count(),
            median: latencies
                .get(latencies.len() / 2)
                .copied()
                .unwrap_or_default(),
        })
    }

    /// Prometheus text exposition; `sources` is each source's state now.
    pub fn render(&self, sources: &[SourceState]) -> String {
        let breakers: Vec<(String, &'static str)> = sources
            .iter()
            .map(|s| (s.name.clone(), s.breaker))
            .collect();
        let mut out = self.render_counters(&breakers);
        self.render_policy(&mut out);
        /// One series per source: (name, help, type, value).
        type PerSource = (
            &'static str,
            &'static str,
            &'static str,
            fn(&SourceState) -> String,
        );
        let series: [PerSource; 5] = [
            (
                "lianqiao_plugin_instantiations_total",
                "Plugin instances created (one per call).",
                "counter",
                |s| s.instantiations.to_string(),
            ),
            (
                "lianqiao_plugin_instantiate_seconds_total",
                "Time spent instantiating plugins.",
                "counter",
                |s| s.instantiate_seconds.to_string(),
            ),
            (
                "lianqiao_plugin_instances_in_use",
                "Plugin instances alive now.",
                "gauge",
                |s| s.in_use.to_string(),
            ),
            (
                "lianqiao_plugin_memory_peak_bytes",
                "The most linear memory one call of the source's plugin has used.",
                "gauge",
                |s| s.memory_peak_bytes.to_string(),
            ),
            (
                "lianqiao_plugin_memory_limit_hits_total",
                "Calls stopped at the source's memory cap.",
                "counter",
                |s| s.memory_limit_hits.to_string(),
            ),
        ];
        for (name, help, kind, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in sources {
                let _ = writeln!(out, "{name}{{source=\"{}\"}} {}", escape(&s.name), value(s));
            }
        }
        out
    }

    /// The audit trail's counters (appended to `render`'s text).
    pub fn render_audit(audit: &AuditState) -> String {
        format!(
            "# HELP lianqiao_audit_records_total Audit records committed.\n# TYPE lianqiao_audit_records_total counter\nlianqiao_audit_records_total {}\n\
             # HELP lianqiao_audit_queue_depth Audit records waiting for the writer.\n# TYPE lianqiao_audit_queue_depth gauge\nlianqiao_audit_queue_depth {}\n",
            audit.written, audit.queue_depth
        )
    }

    fn render_counters(&self, breakers: &[(String, &'static str)]) -> String {
        let mut out = String::new();
        let Ok(m) = self.0.lock() else { return out };
        out.push_str("# HELP lianqiao_requests_total API requests by route and HTTP status.\n# TYPE lianqiao_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "lianqiao_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP lianqiao_request_duration_seconds API request latency by route.\n# TYPE lianqiao_request_duration_seconds histogram\n");
        for (route, h) in &m.request_seconds {
            h.render(
                &mut out,
                "lianqiao_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        out.push_str("# HELP lianqiao_source_calls_total Calls to sources by outcome and error code.\n# TYPE lianqiao_source_calls_total counter\n");
        for ((source, status, code), n) in &m.source_calls {
            let _ = writeln!(
                out,
                "lianqiao_source_calls_total{{source=\"{}\",status=\"{}\",code=\"{}\"}} {n}",
                escape(source),
                escape(status),
                escape(code)
            );
        }
        out.push_str("# HELP lianqiao_source_duration_seconds Latency of calls to each source.\n# TYPE lianqiao_source_duration_seconds histogram\n");
        for (source, h) in &m.source_seconds {
            h.render(
                &mut out,
                "lianqiao_source_duration_seconds",
                &format!("source=\"{}\"", escape(source)),
            );
        }
        out.push_str("# HELP lianqiao_source_breaker_open 1 when the source's circuit is open or half-open.\n# TYPE lianqiao_source_breaker_open gauge\n");
        for (source, state) in breakers {
            let open = u8::from(*state != "closed");
            let _ = writeln!(
                out,
                "lianqiao_source_breaker_open{{source=\"{}\",state=\"{state}\"}} {open}",
                escape(source)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record_request("/v1/{resource}", 200, Duration::from_millis(3));
        m.record_request("/v1/{resource}", 200, Duration::from_millis(30));
        m.record_source("huimin", "ok", "", Duration::from_millis(2));
        let text = m.render(&[SourceState {
            name: "huimin".into(),
            breaker: "closed",
            instantiations: 1,
            instantiate_seconds: 0.00004,
            in_use: 0,
            memory_peak_bytes: 1 << 20,
            memory_limit_hits: 0,
        }]);
        assert!(
            text.contains("lianqiao_plugin_memory_peak_bytes{source=\"huimin\"} 1048576"),
            "{text}"
        );
        assert!(
            text.contains("lianqiao_plugin_instantiations_total{source=\"huimin\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("lianqiao_requests_total{route=\"/v1/{resource}\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "lianqiao_request_duration_seconds_bucket{route=\"/v1/{resource}\",le=\"0.005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "lianqiao_request_duration_seconds_bucket{route=\"/v1/{resource}\",le=\"+Inf\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "lianqiao_source_calls_total{source=\"huimin\",status=\"ok\",code=\"\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("lianqiao_source_breaker_open{source=\"huimin\",state=\"closed\"} 0"),
            "{text}"
        );
    }
}
