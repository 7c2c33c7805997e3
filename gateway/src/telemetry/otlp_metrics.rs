//! Metrics over OTLP/HTTP (protobuf): every `otlp_metrics_interval_s` the
//! same families `/metrics` shows are encoded as one
//! `ExportMetricsServiceRequest` (cumulative sums, gauges and explicit-bucket
//! histograms since the process started) and posted to
//! `otlp_metrics_endpoint`. Off by default. A collector that is down costs
//! one failed POST per interval and a warning, never a request.

use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram as OtlpHistogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::metrics::{BUCKETS, Family, Kind, Value};

fn nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// `families` as one OTLP export, cumulative since `start`.
pub fn encode(
    families: &[Family],
    service: &str,
    start: SystemTime,
    now: SystemTime,
) -> ExportMetricsServiceRequest {
    let (start, now) = (nanos(start), nanos(now));
    let cumulative = AggregationTemporality::Cumulative as i32;
    let metrics = families
        .iter()
        .map(|f| {
            let attributes =
                |labels: &[(&str, String)]| labels.iter().map(|(k, v)| text(k, v)).collect();
            let numbers = || {
                f.series
                    .iter()
                    .filter_map(|s| match &s.value {
                        Value::Number(v) => Some(NumberDataPoint {
                            attributes: attributes(&s.labels),
                            start_time_unix_nano: start,
                            time_unix_nano: now,
                            value: Some(number_data_point::Value::AsDouble(*v)),
                            ..Default::default()
                        }),
                        Value::Histogram(_) => None,
                    })
                    .collect()
            };
            let data = match f.kind {
                Kind::Counter => metric::Data::Sum(Sum {
                    data_points: numbers(),
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                }),
                Kind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: numbers(),
                }),
                Kind::Histogram => metric::Data::Histogram(OtlpHistogram {
                    data_points: f
                        .series
                        .iter()
                        .filter_map(|s| match &s.value {
                            Value::Histogram(h) => {
                                // OTLP counts per bucket; ours are cumulative.
                                let mut per_bucket = Vec::with_capacity(BUCKETS.len() + 1);
                                let mut below = 0;
                                for c in h.counts.iter().chain(std::iter::once(&h.count)) {
                                    per_bucket.push(c - below);
                                    below = *c;
                                }
                                Some(HistogramDataPoint {
                                    attributes: attributes(&s.labels),
                                    start_time_unix_nano: start,
                                    time_unix_nano: now,
                                    count: h.count,
                                    sum: Some(h.sum),
                                    bucket_counts: per_bucket,
                                    explicit_bounds: BUCKETS.to_vec(),
                                    ..Default::default()
                                })
                            }
                            Value::Number(_) => None,
                        })
                        .collect(),
                    aggregation_temporality: cumulative,
                }),
            };
            Metric {
                name: f.name.to_string(),
                description: f.help.to_string(),
                unit: if f.name.contains("seconds") {
                    "s".into()
                } else {
                    String::new()
                },
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![text("service.name", service)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "lianqiao".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::{AuditState, Metrics};
    use prost::Message;
    use std::time::Duration;

    #[test]
    fn histograms_are_sent_per_bucket_and_counters_as_cumulative_sums() {
        let m = Metrics::default();
        m.record_request("/v1/{resource}", 200, Duration::from_micros(700));
        m.record_request("/v1/{resource}", 200, Duration::from_millis(3));
        m.record_request("/v1/{resource}", 500, Duration::from_secs(20));
        let export = encode(
            &m.snapshot(&[], &AuditState::default()),
            "lianqiao-test",
            SystemTime::UNIX_EPOCH,
            SystemTime::now(),
        );
        let decoded = ExportMetricsServiceRequest::decode(export.encode_to_vec().as_slice())
            .expect("a valid protobuf");
        let metrics = &decoded.resource_metrics[0].scope_metrics[0].metrics;
        let find = |name: &str| {
            metrics
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| m.data.clone())
                .unwrap_or_else(|| panic!("no {name}"))
        };
        let Some(metric::Data::Histogram(h)) = Some(find("lianqiao_request_duration_seconds"))
        else {
            panic!("not a histogram")
        };
        let point = &h.data_points[0];
        assert_eq!(point.count, 3);
        assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
        assert_eq!(point.bucket_counts.iter().sum::<u64>(), 3);
        // 0.7 ms in (0.5, 1] ms, 3 ms in (2.5, 5] ms, 20 s above 10 s.
        assert_eq!(point.bucket_counts[1], 1);
        assert_eq!(point.bucket_counts[3], 1);
        assert_eq!(*point.bucket_counts.last().unwrap(), 1);
        let Some(metric::Data::Sum(requests)) = Some(find("lianqiao_requests_total")) else {
            panic!("not a sum")
        };
        assert!(requests.is_monotonic);
        assert_eq!(
            requests.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let ok = requests
            .data_points
            .iter()
            .find(|p| {
                p.attributes
                    .iter()
                    .any(|a| a.key == "status" && a.value == text("", "200").value)
            })
            .expect("the 200 series");
        assert_eq!(ok.value, Some(number_data_point::Value::AsDouble(2.0)));
        assert_eq!(
            decoded.resource_metrics[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes,
            vec![text("service.name", "lianqiao-test")]
        );
    }
}
