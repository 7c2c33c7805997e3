//! Metrics kept in process, snapshotted as families that are rendered as
//! Prometheus text on the admin listener (`/metrics`) and exported over
//! OTLP (`otlp_metrics.rs`). Counters and fixed-bucket histograms, labelled
//! only by route, source, status and code — never by anything a caller
//! sends, so cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets, seconds: 0.5 ms … 10 s.
pub const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A fixed-bucket histogram; `counts[i]` counts observations `<= BUCKETS[i]`
/// (cumulative, as Prometheus exposes them).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Histogram {
    pub counts: [u64; BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One labelled value of a family.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Histogram(Histogram),
}

/// One series: label pairs and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

/// A metric family at one instant; the one model both encoders read
/// (Prometheus text on `/metrics`, OTLP to a collector), so the two never
/// disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub series: Vec<Series>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: Kind) -> Family {
        Family {
            name,
            help,
            kind,
            series: Vec::new(),
        }
    }

    fn number(mut self, labels: Vec<(&'static str, String)>, value: f64) -> Family {
        self.series.push(Series {
            labels,
            value: Value::Number(value),
        });
        self
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
    /// The last health check: `Some(true)` up, `Some(false)` down, `None`
    /// not checked yet (or checks off).
    pub up: Option<bool>,
    pub instantiations: u64,
    pub instantiate_seconds: f64,
    pub in_use: i64,
    pub memory_peak_bytes: u64,
    pub memory_limit_hits: u64,
}

/// The audit trail's state at scrape time.
#[derive(Debug, Clone, Default)]
pub struct AuditState {
    pub written: u64,
    pub failed: u64,
    pub queue_depth: usize,
    /// Fail-open records held in memory for a store that is down.
    pub backlog: usize,
    /// From handing a record to the writer to its commit.
    pub lag: Histogram,
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

/// The gateway's metrics. When off (`telemetry.metrics = false`) nothing
/// is recorded, which the benchmark uses to measure what telemetry costs.
pub struct Metrics {
    inner: Mutex<Inner>,
    policy: PolicyCounters,
    enabled: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(true)
    }
}

/// What the policy did.
#[derive(Default)]
struct PolicyCounters {
    unauthenticated: AtomicU64,
    forbidden: AtomicU64,
    masked_cells: AtomicU64,
    withheld_fields: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Metrics {
    pub fn new(enabled: bool) -> Metrics {
        Metrics {
            inner: Mutex::default(),
            policy: PolicyCounters::default(),
            enabled,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A request refused: `unauthenticated` or `forbidden`.
    pub fn record_denial(&self, kind: &str) {
        let c = if kind == "unauthenticated" {
            &self.policy.unauthenticated
        } else {
            &self.policy.forbidden
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_masked(&self, cells: u64, withheld_fields: u64) {
        self.policy.masked_cells.fetch_add(cells, Ordering::Relaxed);
        self.policy
            .withheld_fields
            .fetch_add(withheld_fields, Ordering::Relaxed);
    }

    pub fn record_request(&self, route: &str, status: u16, latency: Duration) {
        if !self.enabled {
            return;
        }
        if let Ok(mut m) = self.inner.lock() {
            *m.requests.entry((route.to_string(), status)).or_default() += 1;
            m.request_seconds
                .entry(route.to_string())
                .or_default()
                .observe(latency.as_secs_f64());
        }
    }

    pub fn record_source(&self, source: &str, status: &str, code: &str, latency: Duration) {
        if !self.enabled {
            return;
        }
        if let Ok(mut m) = self.inner.lock() {
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

    /// The last calls of `source`, oldest first: (latency, failed).
    pub fn recent_calls(&self, source: &str) -> Vec<(Duration, bool)> {
        self.inner
            .lock()
            .ok()
            .and_then(|m| m.recent.get(source).map(|c| c.iter().copied().collect()))
            .unwrap_or_default()
    }

    /// The last calls of `source` (up to 64), if any.
    pub fn recent(&self, source: &str) -> Option<Recent> {
        let m = self.inner.lock().ok()?;
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

    /// Every family now; `sources` and `audit` are read at this instant.
    pub fn snapshot(&self, sources: &[SourceState], audit: &AuditState) -> Vec<Family> {
        let mut out = Vec::new();
        if let Ok(m) = self.inner.lock() {
            out.extend(Self::traffic(&m));
        }
        out.push(
            Family::new(
                "lianqiao_source_breaker_open",
                "1 when the source's circuit is open or half-open.",
                Kind::Gauge,
            )
            .series_of(sources, |s| {
                (
                    vec![("source", s.name.clone()), ("state", s.breaker.to_string())],
                    f64::from(u8::from(s.breaker != "closed")),
                )
            }),
        );
        out.push(
            Family::new(
                "lianqiao_source_up",
                "1 when the source's last health check passed, 0 when it failed (absent before the first check).",
                Kind::Gauge,
            )
            .series_of_some(sources, |s| {
                s.up.map(|up| (vec![("source", s.name.clone())], f64::from(u8::from(up))))
            }),
        );
        /// One series per source: (name, help, kind, value).
        type PerSource = (&'static str, &'static str, Kind, fn(&SourceState) -> f64);
        let per_source: [PerSource; 5] = [
            (
                "lianqiao_plugin_instantiations_total",
                "Plugin instances created (one per call).",
                Kind::Counter,
                |s| s.instantiations as f64,
            ),
            (
                "lianqiao_plugin_instantiate_seconds_total",
                "Time spent instantiating plugins.",
                Kind::Counter,
                |s| s.instantiate_seconds,
            ),
            (
                "lianqiao_plugin_instances_in_use",
                "Plugin instances alive now.",
                Kind::Gauge,
                |s| s.in_use as f64,
            ),
            (
                "lianqiao_plugin_memory_peak_bytes",
                "The most linear memory one call of the source's plugin has used.",
                Kind::Gauge,
                |s| s.memory_peak_bytes as f64,
            ),
            (
                "lianqiao_plugin_memory_limit_hits_total",
                "Calls stopped at the source's memory cap.",
                Kind::Counter,
                |s| s.memory_limit_hits as f64,
            ),
        ];
        for (name, help, kind, value) in per_source {
            out.push(
                Family::new(name, help, kind)
                    .series_of(sources, |s| (vec![("source", s.name.clone())], value(s))),
            );
        }
        let p = &self.policy;
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        out.push(
            Family::new(
                "lianqiao_policy_denials_total",
                "Requests refused by authentication or policy.",
                Kind::Counter,
            )
            .number(
                vec![("kind", "unauthenticated".into())],
                count(&p.unauthenticated),
            )
            .number(vec![("kind", "forbidden".into())], count(&p.forbidden)),
        );
        out.push(
            Family::new(
                "lianqiao_policy_masked_cells_total",
                "Cells masked in responses.",
                Kind::Counter,
            )
            .number(vec![], count(&p.masked_cells)),
        );
        out.push(
            Family::new(
                "lianqiao_policy_withheld_fields_total",
                "Fields withheld from responses (per response).",
                Kind::Counter,
            )
            .number(vec![], count(&p.withheld_fields)),
        );
        out.extend(Self::audit(audit));
        out
    }

    fn audit(audit: &AuditState) -> [Family; 5] {
        [
            Family::new(
                "lianqiao_audit_records_total",
                "Audit records committed.",
                Kind::Counter,
            )
            .number(vec![], audit.written as f64),
            Family::new(
                "lianqiao_audit_failures_total",
                "Audit records that could not be written when asked.",
                Kind::Counter,
            )
            .number(vec![], audit.failed as f64),
            Family::new(
                "lianqiao_audit_queue_depth",
                "Audit records waiting for the writer.",
                Kind::Gauge,
            )
            .number(vec![], audit.queue_depth as f64),
            Family::new(
                "lianqiao_audit_backlog_records",
                "Fail-open records held in memory until the audit store is back.",
                Kind::Gauge,
            )
            .number(vec![], audit.backlog as f64),
            Family {
                series: vec![Series {
                    labels: vec![],
                    value: Value::Histogram(audit.lag.clone()),
                }],
                ..Family::new(
                    "lianqiao_audit_lag_seconds",
                    "From a record handed to the audit writer to its commit.",
                    Kind::Histogram,
                )
            },
        ]
    }

    fn traffic(m: &Inner) -> [Family; 4] {
        let histograms = |map: &BTreeMap<String, Histogram>, label: &'static str| {
            map.iter()
                .map(|(key, h)| Series {
                    labels: vec![(label, key.clone())],
                    value: Value::Histogram(h.clone()),
                })
                .collect()
        };
        [
            Family {
                series: m
                    .requests
                    .iter()
                    .map(|((route, status), n)| Series {
                        labels: vec![("route", route.clone()), ("status", status.to_string())],
                        value: Value::Number(*n as f64),
                    })
                    .collect(),
                ..Family::new(
                    "lianqiao_requests_total",
                    "API requests by route and HTTP status.",
                    Kind::Counter,
                )
            },
            Family {
                series: histograms(&m.request_seconds, "route"),
                ..Family::new(
                    "lianqiao_request_duration_seconds",
                    "API request latency by route.",
                    Kind::Histogram,
                )
            },
            Family {
                series: m
                    .source_calls
                    .iter()
                    .map(|((source, status, code), n)| Series {
                        labels: vec![
                            ("source", source.clone()),
                            ("status", status.clone()),
                            ("code", code.clone()),
                        ],
                        value: Value::Number(*n as f64),
                    })
                    .collect(),
                ..Family::new(
                    "lianqiao_source_calls_total",
                    "Calls to sources by outcome and error code.",
                    Kind::Counter,
                )
            },
            Family {
                series: histograms(&m.source_seconds, "source"),
                ..Family::new(
                    "lianqiao_source_duration_seconds",
                    "Latency of calls to each source.",
                    Kind::Histogram,
                )
            },
        ]
    }
}

impl Family {
    fn series_of(
        self,
        sources: &[SourceState],
        value: impl Fn(&SourceState) -> (Vec<(&'static str, String)>, f64),
    ) -> Family {
        self.series_of_some(sources, |s| Some(value(s)))
    }

    fn series_of_some(
        mut self,
        sources: &[SourceState],
        value: impl Fn(&SourceState) -> Option<(Vec<(&'static str, String)>, f64)>,
    ) -> Family {
        for (labels, v) in sources.iter().filter_map(value) {
            self.series.push(Series {
                labels,
                value: Value::Number(v),
            });
        }
        self
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

/// Prometheus text exposition (format 0.0.4) of `families`.
pub fn prometheus_text(families: &[Family]) -> String {
    let mut out = String::new();
    for f in families {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {kind}",
            f.name, f.help, f.name
        );
        for s in &f.series {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            match &s.value {
                Value::Number(v) => {
                    let labels = if labels.is_empty() {
                        String::new()
                    } else {
                        format!("{{{}}}", labels.join(","))
                    };
                    let _ = writeln!(out, "{}{labels} {v}", f.name);
                }
                Value::Histogram(h) => {
                    let with_le = |le: &str| {
                        let mut l = labels.clone();
                        l.push(format!("le=\"{le}\""));
                        l.join(",")
                    };
                    for (bound, count) in BUCKETS.iter().zip(h.counts) {
                        let _ = writeln!(
                            out,
                            "{}_bucket{{{}}} {count}",
                            f.name,
                            with_le(&bound.to_string())
                        );
                    }
                    let _ = writeln!(out, "{}_bucket{{{}}} {}", f.name, with_le("+Inf"), h.count);
                    let plain = if labels.is_empty() {
                        String::new()
                    } else {
                        format!("{{{}}}", labels.join(","))
                    };
                    let _ = writeln!(out, "{}_sum{plain} {}", f.name, h.sum);
                    let _ = writeln!(out, "{}_count{plain} {}", f.name, h.count);
                }
            }
        }
    }
    out
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
        let families = m.snapshot(
            &[SourceState {
                name: "huimin".into(),
                breaker: "closed",
                up: Some(true),
                instantiations: 1,
                instantiate_seconds: 0.00004,
                in_use: 0,
                memory_peak_bytes: 1 << 20,
                memory_limit_hits: 0,
            }],
            &AuditState::default(),
        );
        let text = prometheus_text(&families);
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
