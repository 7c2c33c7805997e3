//! Telemetry: RED metrics per route and per source in Prometheus text
//! format, and one access-log line per request.

pub mod metrics;
