//! OpenTelemetry: one federated request through the real binary, its spans
//! exported over OTLP/HTTP to a receiver inside this test, checked as a
//! tree under the caller's trace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lianqiao_e2e::{ConfigDir, Upstreams, default_auth};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_federated_request_exports_its_span_tree_under_the_callers_trace() {
    // The OTLP receiver: keeps every export request.
    let received: Arc<Mutex<Vec<ExportTraceServiceRequest>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                if let Ok(request) = ExportTraceServiceRequest::decode(body) {
                    sink.lock().unwrap().push(request);
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = receiver.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(receiver, app).await });

    let up = Upstreams::start().await;
    let dir = ConfigDir::new()
        .with_huimin()
        .with_upstreams(&up)
        .edit_main(
            "[telemetry]\n",
            &format!("[telemetry]\notlp_endpoint = \"http://{otlp}/v1/traces\"\n"),
        );
    // Spans are exported in batches every minute here, so everything the
    // receiver gets comes from the flush at shutdown.
    let dir = dir.edit_main("[telemetry]\n", "[telemetry]\nlog_format = \"json\"\n");
    let mut gateway = dir
        .spawn_binary(&[("RUST_LOG", "info"), ("OTEL_BSP_SCHEDULE_DELAY", "60000")])
        .await;
    let port = gateway.port;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let get = |path: String, headers: Vec<(String, String)>| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        tcp.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await?;
        Ok::<String, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    };
    let answer = get(
        "/v1/members?division=150103001&limit=2".into(),
        vec![
            ("Authorization".into(), default_auth().into()),
            ("X-Purpose".into(), "case-handling".into()),
            (
                "traceparent".into(),
                format!("00-{trace_id}-{caller_span}-01"),
            ),
        ],
    )
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Wait off the runtime: the receiver above must keep answering while
    // the gateway flushes into it.
    let (exit, gateway) = tokio::task::spawn_blocking(move || (gateway.terminate(), gateway))
        .await
        .unwrap();
    let log = gateway.log();
    assert!(exit.success(), "{exit:?}\n{log}");
    assert!(
        !log.contains("failed"),
        "a clean shutdown and flush:\n{log}"
    );

    let spans: Vec<_> = received
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| r.resource_spans.iter())
        .flat_map(|r| r.scope_spans.iter())
        .flat_map(|s| s.spans.iter())
        .filter(|s| hex(&s.trace_id) == trace_id)
        .cloned()
        .collect();
    // Every export names the service (the collector's first filter).
    for export in received.lock().unwrap().iter() {
        for resource_spans in &export.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| v.value.clone());
            assert_eq!(
                service,
                Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        "lianqiao".into()
                    )
                ),
                "{resource_spans:?}"
            );
        }
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let by_id: HashMap<String, &opentelemetry_proto::tonic::trace::v1::Span> =
        spans.iter().map(|s| (hex(&s.span_id), s)).collect();
    let request = spans
        .iter()
        .find(|s| s.name.ends_with("/v1/{resource}"))
        .unwrap_or_else(|| panic!("no request span in {names:?}"));
    assert_eq!(
        hex(&request.parent_span_id),
        caller_span,
        "the caller's span is the parent"
    );
    // What operators filter on is on the request span.
    let attribute = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.clone())
            .map(|v| {
                use opentelemetry_proto::tonic::common::v1::any_value::Value;
                match v {
                    Value::StringValue(s) => s,
                    Value::IntValue(i) => i.to_string(),
                    other => format!("{other:?}"),
                }
            })
            .unwrap_or_default()
    };
    assert_eq!(attribute(request, "lianqiao.level"), "region");
    assert_eq!(attribute(request, "lianqiao.division"), "15");
    assert_eq!(attribute(request, "lianqiao.decision"), "allow");
    assert_eq!(attribute(request, "lianqiao.rows"), "2");
    assert_eq!(attribute(request, "http.response.status_code"), "200");
    let party_link = spans
        .iter()
        .find(|s| s.name == "source" && attribute(s, "source") == "party-link")
        .expect("a party-link source span");
    assert!(
        attribute(party_link, "rows").parse::<u64>().unwrap() >= 2,
        "{party_link:?}"
    );
    // Every log line is one JSON object with timestamp, level and target.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(parsed[key].is_string(), "no {key}: {line}");
        }
    }
    // One JSON access-log line for the request, with its trace and span ids.
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "lianqiao::access")
        .collect();
    assert_eq!(access.len(), 1, "{log}");
    assert_eq!(access[0]["trace_id"], trace_id, "{}", access[0]);
    assert_eq!(access[0]["span_id"], hex(&request.span_id), "{}", access[0]);
    assert_eq!(access[0]["route"], "/v1/{resource}", "{}", access[0]);
    assert_eq!(access[0]["status"], 200, "{}", access[0]);
    assert!(
        access[0]["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{}",
        access[0]
    );
    for stage in [
        "authenticate",
        "policy",
        "plan",
        "source",
        "plugin.call",
        "plugin.instantiate",
        "host.http",
        "host.sql",
        "merge",
        "audit",
    ] {
        assert!(names.contains(&stage), "no `{stage}` span in {names:?}");
    }
    // Every span hangs off the request span.
    for s in &spans {
        let mut at = s;
        let mut hops = 0;
        while hex(&at.span_id) != hex(&request.span_id) {
            at = *by_id
                .get(&hex(&at.parent_span_id))
                .unwrap_or_else(|| panic!("`{}` is not under the request span", s.name));
            hops += 1;
            assert!(hops < 20);
        }
    }
    // The listing source (party-link) was called under this request; the
    // district's part of each member is joined by enrichment.
    let sources: Vec<String> = spans
        .iter()
        .filter(|s| s.name == "source")
        .filter_map(|s| s.attributes.iter().find(|a| a.key == "source"))
        .filter_map(|a| a.value.as_ref().and_then(|v| v.value.clone()))
        .map(|v| format!("{v:?}"))
        .collect();
    assert!(
        sources.iter().any(|s| s.contains("party-link")),
        "{sources:?}"
    );
    // Each upstream request names the host call that made it as its parent,
    // so the upstream's own spans would hang under it.
    let host_http: Vec<String> = spans
        .iter()
        .filter(|s| s.name == "host.http")
        .map(|s| hex(&s.span_id))
        .collect();
    let sent: Vec<String> = up
        .party_link_faults
        .received()
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "traceparent")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(!sent.is_empty(), "party-link received no traceparent");
    for header in &sent {
        let parent = header.split('-').nth(2).unwrap_or("");
        assert!(
            header.starts_with(&format!("00-{trace_id}-")) && host_http.iter().any(|h| h == parent),
            "{header} is not under a host.http span ({host_http:?})"
        );
    }
    // Span attributes carry no personal data: no attribute holds a name,
    // phone or ID number from the rows this request returned.
    let body: serde_json::Value =
        serde_json::from_str(answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or(""))
            .expect("a JSON body");
    let personal: Vec<String> = body["data"]
        .as_array()
        .expect("rows")
        .iter()
        .flat_map(|row| ["name", "phone", "id_number"].map(|f| row[f].as_str().map(str::to_string)))
        .flatten()
        .filter(|v| v.chars().count() > 1)
        .collect();
    assert!(
        !personal.is_empty(),
        "the rows carry personal fields: {body}"
    );
    for s in &spans {
        for a in &s.attributes {
            let value = format!("{:?}", a.value);
            for p in &personal {
                assert!(
                    !value.contains(p.as_str()),
                    "span `{}` attribute {} holds {p}",
                    s.name,
                    a.key
                );
            }
        }
    }
    drop(dir);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
