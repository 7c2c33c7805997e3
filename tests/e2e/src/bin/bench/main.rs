//! `cargo xtask bench`: latency of the plugin host and of whole requests,
//! against the same query run directly on SQLite in the same run.
//!
//! Prints a Markdown table (also written to target/bench/report.md).

use std::time::{Duration, Instant};

mod load;
mod region;
mod side;
mod writes;

use lianqiao_e2e::{ConfigDir, huimin, workspace_root};
use lianqiao_host::contract::Query;
use sqlx::Row;

const WARMUP: usize = 200;

struct Measured {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Measured {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i]
    }

    fn mean(&self) -> Duration {
        self.samples.iter().sum::<Duration>() / self.samples.len() as u32
    }
}

async fn measure<F, Fut>(name: &'static str, n: usize, mut f: F) -> Measured
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..WARMUP {
        f().await;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let began = Instant::now();
        f().await;
        samples.push(began.elapsed());
    }
    Measured { name, samples }
}

/// A Markdown table of `rows` with each p50 against `base`'s.
fn table(rows: &[&Measured], base_name: &str, base: Duration) -> String {
    let mut out = format!(
        "| measurement | p50 µs | p99 µs | mean µs | p50 / {base_name} |\n|---|---:|---:|---:|---:|\n"
    );
    for m in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.3}× |\n",
            m.name,
            us(m.percentile(0.5)),
            us(m.percentile(0.99)),
            us(m.mean()),
            m.percentile(0.5).as_secs_f64() / base.as_secs_f64()
        ));
    }
    out
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

const GRIDS_SQL: &str = "SELECT t.id, t.code, t.name, t.tier, t.parent, t.community, t.division, t.households, t.head, t.party_branch FROM (SELECT g.code AS id, g.code AS code, d.name AS name, g.tier AS tier, d.parent_code AS parent, g.community_code AS community, g.code AS division, g.households AS households, g.head_worker_id AS head, g.party_branch_id AS party_branch FROM grid g JOIN division d ON d.code = g.code) AS t WHERE (t.division LIKE ? ESCAPE '!') ORDER BY t.division, t.id LIMIT ?";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The side-by-side benchmark's bare server, run as a child process.
    if std::env::args().nth(1).as_deref() == Some("bare-server") {
        let arg = |i| std::env::args().nth(i).unwrap_or_default();
        return tokio::task::spawn_blocking(move || side::bare_server(&arg(2), arg(3).parse()?))
            .await?;
    }
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    // `cargo xtask bench -- <n> telemetry`: only the telemetry table.
    if std::env::args().nth(2).as_deref() == Some("telemetry") {
        print!("{}", telemetry_cost(n).await?);
        return Ok(());
    }
    // `cargo xtask bench -- <seconds> side`: Lianqiao side by side with a
    // bare server, the simulator and nginx (throughput, latency, /proc).
    if std::env::args().nth(2).as_deref() == Some("side") {
        let report = side::side_by_side(n as u64).await?;
        print!("{report}");
        let out = workspace_root().join("target/bench");
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("side.md"), &report)?;
        return Ok(());
    }
    // `cargo xtask bench -- <n> gate`: the whole request and the access
    // policy / disclosure gate table only.
    if std::env::args().nth(2).as_deref() == Some("gate") {
        let gw = ConfigDir::new().with_huimin().start().await;
        let whole = whole_request(&gw, n).await;
        let p50 = whole.percentile(0.5);
        print!("{}", table(&[&whole], "whole request", p50));
        print!("{}", policy(&gw, n, p50).await?);
        return Ok(());
    }
    // `cargo xtask bench -- <districts> region`: the whole region side by
    // side with the five-source demo.
    if std::env::args().nth(2).as_deref() == Some("region") {
        let report = region::region(n).await?;
        print!("{report}");
        let out = workspace_root().join("target/bench");
        std::fs::create_dir_all(&out)?;
        std::fs::write(out.join("region.md"), &report)?;
        return Ok(());
    }
    // `cargo xtask bench -- <districts> region-load`: only the region
    // under load (16 region clients beside 2 district users), to iterate.
    if std::env::args().nth(2).as_deref() == Some("region-load") {
        print!("{}", region::region_under_load(n).await?);
        return Ok(());
    }
    // `cargo xtask bench -- <n> writes`: the case-write table only.
    if std::env::args().nth(2).as_deref() == Some("writes") {
        print!("{}", writes::writes(n).await?);
        return Ok(());
    }
    // `cargo xtask bench -- <n> instructions`: telemetry's cost counted
    // in instructions under callgrind (needs valgrind; not in the default
    // run, which it would lengthen by minutes).
    if std::env::args().nth(2).as_deref() == Some("instructions") {
        print!("{}", instruction_cost(n).await?);
        return Ok(());
    }
    let gw = ConfigDir::new()
        .with_huimin()
        .with_misbehaving("steady", "ok", "159904", "")
        .start()
        .await;
    let source = |name: &str| {
        gw.gateway
            .sources
            .sources
            .iter()
            .find(|s| s.name() == name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no source {name}"))
    };
    let steady = source("steady")?;
    let huimin_source = source("huimin")?;

    let noop = measure("plugin: fresh instance + call (no I/O)", n * 2, || {
        let plugin = &steady.plugin;
        async move {
            let q = Query {
                entity: "grids".into(),
                scope: vec!["159904".into()],
                filters: vec![],
                projection: vec!["id".into(), "division".into()],
                limit: 1,
                cursor: None,
            };
            plugin.query(q).await.expect("steady answers");
        }
    })
    .await;

    let grids_projection: Vec<String> = [
        "id",
        "code",
        "name",
        "tier",
        "parent",
        "community",
        "division",
        "households",
        "head",
        "party_branch",
    ]
    .map(String::from)
    .to_vec();
    let plugin_sql = measure(
        "plugin: fresh instance + call, 50 grids via host sql",
        n,
        || {
            let plugin = &huimin_source.plugin;
            let projection = grids_projection.clone();
            async move {
                let q = Query {
                    entity: "grids".into(),
                    scope: vec!["150103".into()],
                    filters: vec![],
                    projection,
                    limit: 50,
                    cursor: None,
                };
                let page = plugin.query(q).await.expect("huimin answers");
                assert_eq!(page.rows.len(), 50);
            }
        },
    )
    .await;

    let whole = whole_request(&gw, n).await;

    let url = format!("sqlite://{}?mode=ro", huimin().1.display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await?;
    let direct = measure("baseline: same query directly on SQLite (sqlx)", n, || {
        let pool = pool.clone();
        async move {
            let rows = sqlx::query(GRIDS_SQL)
                .bind("150103%")
                .bind(51i64)
                .fetch_all(&pool)
                .await
                .expect("direct");
            assert_eq!(rows.len(), 51);
        }
    })
    .await;
    let direct_json = measure("reference: direct SQLite + JSON encoding", n, || {
        let pool = pool.clone();
        async move {
            let rows = sqlx::query(GRIDS_SQL).bind("150103%").bind(51i64).fetch_all(&pool).await.expect("direct");
            let json: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "id": r.get::<String, _>(0), "code": r.get::<String, _>(1), "name": r.get::<String, _>(2),
                        "tier": r.get::<String, _>(3), "parent": r.get::<String, _>(4), "community": r.get::<String, _>(5),
                        "division": r.get::<String, _>(6), "households": r.get::<i64, _>(7),
                        "head": r.get::<Option<String>, _>(8), "party_branch": r.get::<Option<String>, _>(9),
                    })
                })
                .collect();
            std::hint::black_box(serde_json::to_vec(&json).expect("json"));
        }
    })
    .await;

    let base = direct.percentile(0.5);
    let mut report = String::new();
    report.push_str(&format!(
        "Lianqiao benchmark: {n} samples per row after {WARMUP} warm-up, one client, release build\n\n"
    ));
    report.push_str(&table(
        &[&noop, &plugin_sql, &whole, &direct, &direct_json],
        "baseline",
        base,
    ));
    report.push_str(&policy(&gw, n, whole.percentile(0.5)).await?);
    report.push_str(&telemetry_cost(n).await?);
    report.push_str(&fan_out().await?);
    report.push_str(&load_with_a_failing_source().await?);
    report.push_str(&writes::writes(n).await?);
    print!("{report}");
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("report.md"), &report)?;
    Ok(())
}

/// The whole request every other row is compared with.
async fn whole_request(gw: &lianqiao_e2e::TestGateway, n: usize) -> Measured {
    measure(
        "gateway: GET /v1/grids?division=150103&limit=50",
        n,
        || async {
            let (status, body) = gw.get("/v1/grids?division=150103&limit=50").await;
            assert_eq!(status, 200);
            assert_eq!(body["data"].as_array().map(Vec::len), Some(50));
        },
    )
    .await
}

/// The access policy's cost: phase 1 with and without cached decisions,
/// one Cedar evaluation, phase 2 (row checks + masking) on a page of 50
/// members, raw masking throughput, and one audit record committed; each
/// against the whole request measured above.
async fn policy(
    gw: &lianqiao_e2e::TestGateway,
    n: usize,
    whole_p50: Duration,
) -> anyhow::Result<String> {
    use lianqiao_gateway::disclosure::{Facts, rows::ListGate};
    use lianqiao_gateway::federation::{ListOutcome, MergedRow};
    use lianqiao_host::contract::Value;
    use lianqiao_policy::{Level, Mask, Principal};
    use std::sync::Arc;

    let gateway = gw.gateway.clone();
    let enforcer = gateway.config.enforcer.clone();
    let street = Principal::new(
        "bench",
        Level::Street,
        "150103001",
        Vec::<String>::new(),
        "case-handling",
    );
    let cached = measure(
        "policy phase 1, cached: scope + 16 field decisions (members)",
        n,
        || {
            let (e, p) = (&enforcer, &street);
            async move {
                std::hint::black_box(
                    e.authorize_list(p, "members", "150103001")
                        .expect("allowed"),
                );
            }
        },
    )
    .await;
    let mut i = 0u64;
    let uncached = measure(
        "policy phase 1, uncached (new principal each time)",
        n / 4,
        || {
            i += 1;
            let p = Principal::new(
                format!("bench-{i}"),
                Level::Street,
                "150103001",
                Vec::<String>::new(),
                "case-handling",
            );
            let e = &enforcer;
            async move {
                std::hint::black_box(
                    e.authorize_list(&p, "members", "150103001")
                        .expect("allowed"),
                );
            }
        },
    )
    .await;
    let one = measure("one Cedar evaluation (uncached)", n, || {
        let (e, p) = (&enforcer, &street);
        async move {
            std::hint::black_box(e.engine.evaluate(&lianqiao_policy::engine::Question {
                principal: p,
                action: lianqiao_policy::Action::ReadPersonal,
                kind: "members",
                division: "150103001001",
                record_loop: None,
                field: Some(("phone", lianqiao_policy::FieldClass::Personal)),
                to: None,
            }));
        }
    })
    .await;

    let page: Vec<MergedRow> = (0..50)
        .map(|k| MergedRow {
            source: Arc::from("bench"),
            division: format!("1501030010{:02}", 1 + k % 9),
            id: format!("DY{k:06}"),
            cells: vec![
                ("id".into(), Value::Text(format!("DY{k:06}"))),
                ("name".into(), Value::Text("欧阳娜娜".into())),
                ("phone".into(), Value::Text("13812345678".into())),
                ("id_number".into(), Value::Text("15010319850312123X".into())),
                ("ethnicity".into(), Value::Text("蒙古族".into())),
                ("birth_date".into(), Value::Date("1985-03-12".into())),
                (
                    "address".into(),
                    Value::Text("回民区新华西路8号院3号楼".into()),
                ),
                ("org".into(), Value::Text("150103-DZB-0001".into())),
                ("status".into(), Value::Text("regular".into())),
                (
                    "division".into(),
                    Value::Text(format!("1501030010{:02}", 1 + k % 9)),
                ),
            ],
        })
        .collect();
    let members = lianqiao_gateway::model::entity("members").expect("members");
    let mut request = lianqiao_gateway::api::parse_list(
        members,
        Some("division=150103001&limit=50"),
        &gateway.config.server,
    )
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let gate = ListGate::authorize(
        gateway.gate(),
        &street,
        &mut request,
        None,
        &mut Facts::default(),
    )
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let next = lianqiao_gateway::federation::cursor::CursorState {
        fingerprint: request.fingerprint(),
        positions: [(
            "bench".to_string(),
            lianqiao_gateway::federation::cursor::SourcePosition {
                cursor: Some("[\"150103001009\",\"DY000049\"]".into()),
                skip: 0,
            },
        )]
        .into(),
        started: Some(("150103".into(), "bench".into())),
    };
    let phase2 = measure(
        "disclosure gate, phase 2: 50 member rows checked, masked, cursor sealed, body built",
        n,
        || {
            let (gate, request) = (&gate, &request);
            let rows = page.clone();
            let next = Some(next.clone());
            async move {
                let outcome = ListOutcome {
                    rows,
                    next,
                    reports: vec![],
                };
                let mut facts = Facts::default();
                std::hint::black_box(gate.release(outcome, request, &mut facts));
                assert_eq!(facts.masked, 200, "name, phone, birth date, address");
            }
        },
    )
    .await;
    let values = [
        "欧阳娜娜",
        "13812345678",
        "15010319850312123X",
        "1985-03-12",
    ];
    let masks = [Mask::Name, Mask::Phone, Mask::IdNumber, Mask::Date];
    let mask_run = measure(
        "masking: 1,000 values (name, phone, ID, date)",
        n / 4,
        || async {
            for k in 0..1000 {
                std::hint::black_box(masks[k % 4].apply(values[k % 4]));
            }
        },
    )
    .await;
    let audit = measure(
        "audit: one record committed (batched writer, WAL, synchronous=FULL)",
        n / 4,
        || {
            let log = &gateway.audit;
            async move {
                log.write(
                    lianqiao_gateway::audit::AuditRecord {
                        at: lianqiao_gateway::audit::now_rfc3339(),
                        request_id: "bench".into(),
                        principal: "bench".into(),
                        ..Default::default()
                    },
                    false,
                )
                .await
                .expect("audit store up");
            }
        },
    )
    .await;

    // The statistics gate on a protected answer: a city's members of one
    // district by community and ethnicity (the universe of 56 groups per
    // community is listed, small cells suppressed, the rest perturbed).
    let city = Principal::new(
        "bench-city",
        Level::City,
        "1501",
        Vec::<String>::new(),
        "statistics",
    );
    let ethnicity = members.field("ethnicity").expect("ethnicity");
    let cells: Vec<lianqiao_gateway::federation::stats::StatsCell> = (1..=57)
        .flat_map(|c| {
            ["汉族", "蒙古族", "回族", "满族", "达斡尔族", "鄂温克族"]
                .into_iter()
                .enumerate()
                .map(
                    move |(k, e)| lianqiao_gateway::federation::stats::StatsCell {
                        division: Some(format!("150103{:03}{:03}", 1 + c / 8, c)),
                        key: Some(Value::Text(e.into())),
                        count: [120, 30, 12, 4, 2, 1][k] + c as i64 % 7,
                        digest: Some((c as u64) << 8 | k as u64),
                    },
                )
        })
        .collect();
    let stats_gate = measure(
        "disclosure gate, statistics: phase 1 + protected release of 57 communities × 56 ethnic groups",
        n / 4,
        || {
            let (g, p) = (&gateway, &city);
            let cells = cells.clone();
            async move {
                let mut request = lianqiao_gateway::federation::stats::StatsRequest {
                    entity: members,
                    scope: vec!["150103".into()],
                    filters: vec![],
                    division_prefix: Some(12),
                    by: Some(ethnicity),
                    strict: false,
                    measure: None,
                    records: false,
                };
                let mut facts = Facts::default();
                let gate = lianqiao_gateway::disclosure::counts::StatsGate::authorize(
                    g.gate(),
                    p,
                    &mut request,
                    &mut facts,
                )
                .expect("the city may count by ethnicity");
                assert!(!gate.exact());
                let outcome = lianqiao_gateway::federation::stats::StatsOutcome {
                    cells,
                    reports: vec![],
                };
                std::hint::black_box(gate.release(outcome, &request, &mut facts).ok());
            }
        },
    )
    .await;
    let mut out = format!(
        "\n### Access policy, disclosure gate and audit ({} µs whole request p50 above = 1.00×)\n\n",
        us(whole_p50)
    );
    out.push_str(&table(
        &[
            &cached,
            &uncached,
            &one,
            &phase2,
            &stats_gate,
            &mask_run,
            &audit,
        ],
        "whole request",
        whole_p50,
    ));
    out.push_str(&format!(
        "\nMasking throughput: {:.1} M values/s; phase 2 masks 200 cells per page: {:.1} M cells/s.\n",
        1000.0 / mask_run.percentile(0.5).as_secs_f64() / 1e6,
        200.0 / phase2.percentile(0.5).as_secs_f64() / 1e6
    ));
    Ok(out)
}

/// A stand-in OTLP/HTTP collector: counts the exports it is sent and
/// throws them away.
async fn collector() -> anyhow::Result<(
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
)> {
    use bytes::Bytes;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let exports = Arc::new(AtomicUsize::new(0));
    let seen = exports.clone();
    let collector = axum::Router::new().fallback(move |body: Bytes| {
        let seen = seen.clone();
        async move {
            if !body.is_empty() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            (
                [("content-type", "application/x-protobuf")],
                Vec::<u8>::new(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let otlp = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, collector).await });
    Ok((otlp, exports))
}

/// The telemetry settings compared.
#[derive(Clone, Copy)]
enum Telemetry {
    /// No metrics, no access log, warnings only, no export.
    Off,
    /// Metrics, a JSON access line per request, health checks, `info`.
    Local,
    /// The above plus every span and the metrics over OTLP to `otlp`.
    Everything,
    /// `Everything` with one trace in ten sampled.
    Sampled,
}

/// A Huimin-only gateway with `telemetry`; OTLP metrics every
/// `metrics_interval_s`.
fn telemetry_config(
    telemetry: Telemetry,
    otlp: std::net::SocketAddr,
    metrics_interval_s: u32,
) -> ConfigDir {
    let dir = ConfigDir::new().with_huimin();
    match telemetry {
        Telemetry::Off => dir.edit_main(
            "[telemetry]\n",
            "[telemetry]\nmetrics = false\naccess_log = false\nlog_level = \"warn\"\n",
        ),
        Telemetry::Local => dir.edit_main(
            "health_interval_s = 0\n",
            "health_interval_s = 30\nlog_format = \"json\"\nlog_level = \"info\"\n",
        ),
        Telemetry::Everything | Telemetry::Sampled => dir.edit_main(
            "health_interval_s = 0\n",
            &format!(
                "health_interval_s = 30\nlog_format = \"json\"\nlog_level = \"info\"\n\
                 otlp_endpoint = \"http://{otlp}/v1/traces\"\n\
                 otlp_metrics_endpoint = \"http://{otlp}/v1/metrics\"\n\
                 otlp_metrics_interval_s = {metrics_interval_s}\n\
                 trace_sample_ratio = {}\n",
                if matches!(telemetry, Telemetry::Sampled) {
                    0.1
                } else {
                    1.0
                }
            ),
        ),
    }
}

/// What telemetry costs in instructions: each configuration's release
/// binary under `valgrind --tool=callgrind` (on-demand allocator: valgrind
/// refuses the pool's address-space reservation), counters zeroed after
/// a warm-up, `n` requests, counters dumped. Instruction counts do not
/// depend on what else the machine is doing, so this settles what
/// side-by-side timings on a shared 2-core machine cannot.
async fn instruction_cost(n: usize) -> anyhow::Result<String> {
    let valgrind = std::process::Command::new("valgrind")
        .arg("--version")
        .output();
    anyhow::ensure!(
        valgrind.is_ok_and(|o| o.status.success()),
        "valgrind is not installed (apt-get install valgrind)"
    );
    let out_dir = workspace_root().join("target/bench/callgrind");
    std::fs::create_dir_all(&out_dir)?;
    let (otlp, exports) = collector().await?;
    let get = one_request();
    let variants = [
        ("telemetry off", Telemetry::Off),
        (
            "metrics + JSON access log + health checks",
            Telemetry::Local,
        ),
        (
            "everything on (+ spans and metrics over OTLP)",
            Telemetry::Everything,
        ),
        (
            "sampled: everything on, trace_sample_ratio = 0.1",
            Telemetry::Sampled,
        ),
    ];
    let mut rows = Vec::new();
    for (name, telemetry) in variants {
        // Production intervals: under valgrind a request takes ~50× longer,
        // so timer-driven work (metrics export, health checks) is charged
        // ~50× more per request than in real life; the figure is an upper
        // bound.
        let dir = telemetry_config(telemetry, otlp, 10)
            .edit_main("[plugins]\n", "[plugins]\nallocator = \"on-demand\"\n")
            // The plugin runs ~50× slower too; keep it within its deadline.
            .edit_source("huimin", "deadline_ms = 2000", "deadline_ms = 60000");
        let label = name.split([' ', ':']).next().unwrap_or("x");
        let out_file = out_dir.join(format!("{label}.out"));
        let pattern = format!("--callgrind-out-file={}.%p", out_file.display());
        // LIANQIAO_BENCH_CALLGRIND_ARGS adds options (e.g.
        // `--separate-threads=yes` to split request-path and background
        // work; the totals are then summed over the threads' files).
        let extra = std::env::var("LIANQIAO_BENCH_CALLGRIND_ARGS").unwrap_or_default();
        let mut wrapper = vec!["valgrind", "--tool=callgrind", pattern.as_str()];
        wrapper.extend(extra.split_whitespace());
        let mut gateway = dir.spawn_binary_under(&wrapper, "release", &[]).await;
        for _ in 0..20 {
            get(gateway.port).await;
        }
        let pid = gateway.child.id().to_string();
        let control = |what: &str| -> anyhow::Result<()> {
            let status = std::process::Command::new("callgrind_control")
                .args([what, &pid])
                .stdout(std::process::Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "callgrind_control {what} {pid} failed");
            Ok(())
        };
        control("-z")?;
        let logged = gateway.log().len();
        for _ in 0..n {
            get(gateway.port).await;
        }
        control("-d")?;
        let log = gateway.log();
        let log_bytes = log.len().saturating_sub(logged) as f64 / n as f64;
        std::fs::write(out_file.with_extension("log"), &log)?;
        let dump = std::path::PathBuf::from(format!("{}.{pid}.1", out_file.display()));
        // One file, or one per thread (`<dump>-01`, `-02`, …).
        let prefix = format!("{}", dump.file_name().unwrap_or_default().to_string_lossy());
        let mut total = 0u64;
        for entry in std::fs::read_dir(&out_dir)? {
            let path = entry?.path();
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if name != prefix && !name.starts_with(&format!("{prefix}-")) {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            total += text
                .lines()
                .find_map(|l| l.strip_prefix("totals: "))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| anyhow::anyhow!("no totals in {}", path.display()))?;
        }
        anyhow::ensure!(total > 0, "callgrind wrote no dump at {}", dump.display());
        gateway.terminate();
        rows.push((name, total as f64 / n as f64, log_bytes, dump));
    }
    let base = rows[0].1;
    let mut out = format!(
        "\nInstructions per request (callgrind, release binary, on-demand allocator), GET /v1/grids?division=150103&limit=50, \
         {n} requests after 20 warm-up; the collector received {} OTLP exports\n\n\
         | configuration | instructions per request | / off | log bytes per request | callgrind dump |\n|---|---:|---:|---:|---|\n",
        exports.load(std::sync::atomic::Ordering::Relaxed)
    );
    for (name, per_request, log_bytes, dump) in &rows {
        out.push_str(&format!(
            "| {name} | {:.0} | {:.3}× | {log_bytes:.0} | {} |\n",
            per_request,
            per_request / base,
            dump.strip_prefix(workspace_root())
                .unwrap_or(dump)
                .display()
        ));
    }
    Ok(out)
}

/// GET /v1/grids?division=150103&limit=50 against a gateway on `port`,
/// asserting a full page.
fn one_request() -> impl Fn(u16) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    move |port: u16| {
        let client = client.clone();
        Box::pin(async move {
            let request = hyper::Request::get(format!(
                "http://127.0.0.1:{port}/v1/grids?division=150103&limit=50"
            ))
            .header("Authorization", lianqiao_e2e::default_auth())
            .header("X-Purpose", "case-handling")
            .body(Empty::new())
            .expect("request");
            let response = client.request(request).await.expect("an answer");
            assert_eq!(response.status(), 200);
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            assert!(body.len() > 1000);
        })
    }
}

/// Rounds the wall-clock comparison is split into; each round gives one
/// ratio per configuration, and the table reports their median and range.
const ROUNDS: usize = 5;

/// What telemetry costs on the wall clock: the real (release) binary five
/// times side by side — off, off again (the noise floor), metrics + logs,
/// everything (every span, and the metrics every 10 s, the default, over
/// OTLP to a collector in this process), everything with one trace in ten
/// sampled. Requests go to the five in turn, one at a time (the order
/// rotating), so drift in the machine's speed hits all
/// alike; with two or more CPUs the gateways share CPU 1 and this process
/// (client and collector) keeps to CPU 0, so neither's scheduling shows up
/// in the other's latency.
async fn telemetry_cost(n: usize) -> anyhow::Result<String> {
    use std::sync::atomic::Ordering;

    let pinned = pin_to_first_cpu();
    let wrapper: &[&str] = if pinned { &["taskset", "-c", "1"] } else { &[] };
    let (otlp, exports) = collector().await?;
    let off = telemetry_config(Telemetry::Off, otlp, 10);
    let local = telemetry_config(Telemetry::Local, otlp, 10);
    let on = telemetry_config(Telemetry::Everything, otlp, 10);
    let sampled = telemetry_config(Telemetry::Sampled, otlp, 10);
    // The same "off" twice: how far two identical processes differ is the
    // noise floor of this comparison.
    let off_again = telemetry_config(Telemetry::Off, otlp, 10);
    let variants = [
        (
            "telemetry off (no metrics, no access log, warnings only)",
            off.spawn_binary_under(wrapper, "release", &[]).await,
        ),
        (
            "telemetry off, a second process (noise floor)",
            off_again.spawn_binary_under(wrapper, "release", &[]).await,
        ),
        (
            "metrics + JSON access log + health checks (info level)",
            local.spawn_binary_under(wrapper, "release", &[]).await,
        ),
        (
            "everything on: the above + every span and the metrics over OTLP",
            on.spawn_binary_under(wrapper, "release", &[]).await,
        ),
        (
            "everything on, one trace in ten exported (`trace_sample_ratio = 0.1`)",
            sampled.spawn_binary_under(wrapper, "release", &[]).await,
        ),
    ];
    let get = one_request();
    for (_, gateway) in &variants {
        for _ in 0..WARMUP {
            get(gateway.port).await;
        }
    }
    let before: Vec<ProcStats> = variants
        .iter()
        .map(|(_, g)| ProcStats::of(g.child.id()))
        .collect();
    // samples[round][variant]
    let per_round = (n / ROUNDS).max(20);
    let mut samples = vec![vec![Vec::with_capacity(per_round); variants.len()]; ROUNDS];
    for round in &mut samples {
        for i in 0..per_round {
            for k in 0..variants.len() {
                let which = (i + k) % variants.len();
                let began = Instant::now();
                get(variants[which].1.port).await;
                round[which].push(began.elapsed());
            }
        }
    }
    // CPU over the whole run, background work (export, health checks,
    // the log writer) included: what the process cost per request served.
    let used: Vec<ProcStats> = variants
        .iter()
        .zip(&before)
        .map(|((_, g), before)| ProcStats::of(g.child.id()).since(before))
        .collect();
    // Let the last batch of spans go out, so the collector has seen them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let exported = exports.load(Ordering::Relaxed);
    // "everything on", the row the closing line reports.
    let everything = variants
        .iter()
        .position(|(name, _)| name.starts_with("everything on:"))
        .unwrap_or(variants.len() - 1);
    let access_lines = variants[everything]
        .1
        .log()
        .lines()
        .filter(|l| l.contains("lianqiao::access"))
        .count();
    let served = per_round * ROUNDS;
    anyhow::ensure!(exported > 0, "the collector received no export");
    anyhow::ensure!(
        access_lines >= served,
        "{access_lines} access lines for {served} requests"
    );
    // Per round: each configuration's p50 over the mean of the two "off"
    // processes' p50s in that round.
    let p50 = |d: &[Duration]| {
        Measured {
            name: "",
            samples: d.to_vec(),
        }
        .percentile(0.5)
        .as_secs_f64()
    };
    let round_p50: Vec<Vec<f64>> = samples
        .iter()
        .map(|round| round.iter().map(|s| p50(s)).collect())
        .collect();
    let ratios: Vec<Vec<f64>> = (0..variants.len())
        .map(|v| {
            let mut r: Vec<f64> = round_p50
                .iter()
                .map(|round| round[v] / ((round[0] + round[1]) / 2.0))
                .collect();
            r.sort_by(f64::total_cmp);
            r
        })
        .collect();
    let measured: Vec<Measured> = variants
        .iter()
        .enumerate()
        .map(|(v, (name, _))| Measured {
            name,
            samples: samples.iter().flat_map(|round| round[v].clone()).collect(),
        })
        .collect();
    let pipeline = span_pipeline(otlp, n * 5);
    let (metrics_cost, log_cost) = local_costs(n * 5);
    let base = (measured[0].percentile(0.5) + measured[1].percentile(0.5)) / 2;
    let base_cpu = (used[0].cpu() + used[1].cpu()) / 2;
    let mut out = format!(
        "\nTelemetry on vs off: the release binary five times side by side, GET /v1/grids?division=150103&limit=50 over loopback (keep-alive), \
         {served} requests each, sent to the five in turn; {}; {ROUNDS} rounds. \
         The collector received {exported} OTLP exports, the access log {access_lines} lines\n\n\
         | measurement | p50 µs | p99 µs | mean µs | p50 / off | median of rounds (range) | gateway CPU µs per request | CPU / off | of which system µs | page faults per request | context switches per request |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        if pinned {
            "gateways on CPU 1, client and collector on CPU 0"
        } else {
            "processes not pinned (one CPU, or no `taskset`)"
        }
    );
    for ((m, stats), r) in measured.iter().zip(&used).zip(&ratios) {
        let per_request = |v: f64| v / served as f64;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.3}× | {:.3}× ({:.3}–{:.3}) | {:.0} | {:.3}× | {:.0} | {:.2} | {:.2} |\n",
            m.name,
            us(m.percentile(0.5)),
            us(m.percentile(0.99)),
            us(m.mean()),
            m.percentile(0.5).as_secs_f64() / base.as_secs_f64(),
            r[r.len() / 2],
            r[0],
            r[r.len() - 1],
            per_request(stats.cpu().as_secs_f64() * 1e6),
            stats.cpu().as_secs_f64() / base_cpu.as_secs_f64(),
            per_request(stats.system.as_secs_f64() * 1e6),
            per_request(stats.faults as f64),
            per_request(stats.switches as f64),
        ));
    }
    let spans = pipeline[0]
        .percentile(0.5)
        .saturating_sub(pipeline[2].percentile(0.5));
    let in_process = spans + pipeline[2].percentile(0.5) + metrics_cost + log_cost;
    out.push_str(&format!(
        "\nIn process, per request: the span tree (13 spans) through `tracing` and the span recorder into the export queue (encoded) \
         p50 {} µs sampled, {} µs unsampled (`trace_sample_ratio = 0`), {} µs with no recorder; \
         recording the request's metrics {} µs; writing its JSON access line {} µs. \
         Sum: {} µs = {:.1}% of the p50 with telemetry off (target: under 5%).\n",
        us(pipeline[0].percentile(0.5)),
        us(pipeline[1].percentile(0.5)),
        us(pipeline[2].percentile(0.5)),
        us(metrics_cost),
        us(log_cost),
        us(in_process),
        in_process.as_secs_f64() / base.as_secs_f64() * 100.0,
    ));
    out.push_str(&format!(
        "End to end, everything on differs from off by {:+.1}% of p50 (median of rounds) and {:+.1}% of gateway CPU; \
         the second \"off\" process by {:+.1}% (the noise floor of this comparison).\n",
        (ratios[everything][ROUNDS / 2] - 1.0) * 100.0,
        (used[everything].cpu().as_secs_f64() / base_cpu.as_secs_f64() - 1.0) * 100.0,
        (ratios[1][ROUNDS / 2] - ratios[0][ROUNDS / 2]) * 100.0,
    ));
    drop(variants);
    drop((off, off_again, local, on, sampled));
    Ok(out)
}

/// What the kernel counts for a process: CPU time (user, system), minor
/// page faults and context switches (all threads).
#[derive(Clone, Copy, Default)]
struct ProcStats {
    user: Duration,
    system: Duration,
    faults: u64,
    switches: u64,
}

impl ProcStats {
    fn of(pid: u32) -> ProcStats {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.split(' ').collect())
            .unwrap_or_default();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut switches = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        ProcStats {
            user: Duration::from_millis(field(11) * 10),
            system: Duration::from_millis(field(12) * 10),
            faults: field(7),
            switches,
        }
    }

    fn cpu(&self) -> Duration {
        self.user + self.system
    }

    fn add(&self, other: &ProcStats) -> ProcStats {
        ProcStats {
            user: self.user + other.user,
            system: self.system + other.system,
            faults: self.faults + other.faults,
            switches: self.switches + other.switches,
        }
    }

    fn since(&self, before: &ProcStats) -> ProcStats {
        ProcStats {
            user: self.user.saturating_sub(before.user),
            system: self.system.saturating_sub(before.system),
            faults: self.faults.saturating_sub(before.faults),
            switches: self.switches.saturating_sub(before.switches),
        }
    }
}

/// Keep this process (every thread) on CPU 0, if the machine has two or
/// more and `taskset` is there; whether it did.
fn pin_to_first_cpu() -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpus >= 2
        && std::process::Command::new("taskset")
            .args(["-a", "-cp", "0", &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// What recording one request's metrics and writing its JSON access
/// line cost, in process (p50 of `n`).
fn local_costs(n: usize) -> (Duration, Duration) {
    use tracing_subscriber::prelude::*;
    let metrics = lianqiao_gateway::telemetry::metrics::Metrics::default();
    let record = measure_sync(n, || {
        metrics.record_request("/v1/{resource}", 200, Duration::from_micros(2800));
        metrics.record_source("huimin", "ok", "", Duration::from_micros(1200));
        metrics.record_masked(0, 0);
    })
    .percentile(0.5);
    // The gateway's own JSON layer and batched writer, into a sink.
    let (writer, _flush) =
        lianqiao_gateway::telemetry::logwriter::BatchedWriter::start(std::io::sink());
    let json = tracing_subscriber::registry().with(
        lianqiao_gateway::telemetry::logline::JsonLines::new(writer, false),
    );
    let log = tracing::dispatcher::with_default(&tracing::Dispatch::new(json), || {
        measure_sync(n, || {
            tracing::info!(
                target: "lianqiao::access",
                method = "GET",
                route = "/v1/{resource}",
                path = "/v1/grids",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = "00f067aa0ba902b7",
                request_id = "74a27c6ef844a5a2a6ef5bbd",
                status = 200,
                latency_ms = 2.8,
            );
        })
        .percentile(0.5)
    });
    (record, log)
}

/// `n` runs of `f`, after a warm-up.
fn measure_sync(n: usize, mut f: impl FnMut()) -> Measured {
    for _ in 0..WARMUP {
        f();
    }
    let samples = (0..n)
        .map(|_| {
            let began = Instant::now();
            f();
            began.elapsed()
        })
        .collect();
    Measured { name: "", samples }
}

/// The span tree of one federated request, built synchronously.
fn span_tree() {
    let request = tracing::info_span!(
        "request",
        otel.name = "GET /v1/{resource}",
        http.route = "/v1/{resource}",
        http.response.status_code = 200,
        lianqiao.level = "district",
        lianqiao.division = "150103",
        lianqiao.rows = 50,
    );
    let _r = request.enter();
    tracing::info_span!("authenticate").in_scope(|| {});
    tracing::info_span!("policy", phase = 1, level = "district", division = "150103")
        .in_scope(|| {});
    tracing::info_span!("plan", entity = "grids", sources = 1).in_scope(|| {});
    tracing::info_span!("source", source = "huimin", entity = "grids", rows = 51).in_scope(|| {
        tracing::info_span!("plugin.call", source = "huimin").in_scope(|| {
            tracing::info_span!("plugin.instantiate").in_scope(|| {});
            tracing::info_span!(
                "host.sql",
                source = "huimin",
                db.system = "sqlite",
                db.query.text = "SELECT t.id, t.code, t.name FROM grid t WHERE t.division LIKE ? ORDER BY t.division, t.id LIMIT ?",
                db.response.returned_rows = 51,
            )
            .in_scope(|| {});
        });
    });
    tracing::info_span!("merge").in_scope(|| {});
    tracing::info_span!("policy", phase = 2, rows = 50).in_scope(|| {});
    tracing::info_span!("audit").in_scope(|| {});
    tracing::info_span!("encode").in_scope(|| {});
}

/// `span_tree` per iteration: with the span recorder exporting to
/// `otlp` (sampled, then unsampled), and with no layer at all.
fn span_pipeline(otlp: std::net::SocketAddr, n: usize) -> Vec<Measured> {
    use tracing_subscriber::prelude::*;
    let runtime = tokio::runtime::Handle::current();
    let endpoint = format!("http://{otlp}/v1/traces");
    let time = |name: &'static str, dispatch: tracing::Dispatch| {
        tracing::dispatcher::with_default(&dispatch, || Measured {
            name,
            samples: measure_sync(n, span_tree).samples,
        })
    };
    let _entered = runtime.enter();
    let mut out = Vec::new();
    for (name, ratio) in [("sampled", 1.0), ("unsampled", 0.0)] {
        let (traces, recorder) =
            lianqiao_gateway::telemetry::otel::Traces::start(&endpoint, "bench", ratio)
                .expect("a trace pipeline");
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("info"))
            .with(recorder);
        out.push(time(name, tracing::Dispatch::new(subscriber)));
        traces.shutdown();
    }
    let bare = tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new("info"));
    out.push(time("no layer", tracing::Dispatch::new(bare)));
    out
}

/// Fan-out: N sources, each answering after 20 ms; a request's p50 should
/// stay near the slowest source, not the sum.
async fn fan_out() -> anyhow::Result<String> {
    const DELAY_MS: f64 = 20.0;
    let mut out = String::from(
        "\nFan-out: N sources each answering after 20 ms (misbehave `slow`), GET /v1/grids?division=159904\n\n\
         | sources | p50 ms | p99 ms | p50 / slowest source (20 ms) | sum of sources |\n|---:|---:|---:|---:|---:|\n",
    );
    for n in [1usize, 4, 16, 64] {
        let mut dir = ConfigDir::new().with_pool_instances(256);
        for i in 0..n {
            dir = dir.with_misbehaving(&format!("slow-{i}"), "slow", "159904", "");
            let path = dir.dir.path().join(format!("sources/slow-{i}.toml"));
            let text = std::fs::read_to_string(&path)?
                .replace("mode = \"slow\"", "mode = \"slow\"\ndelay_ms = 20");
            std::fs::write(
                &path,
                text.replace("deadline_ms = 300", "deadline_ms = 2000"),
            )?;
        }
        let gw = dir.start().await;
        let m = measure("fan-out", 60, || async {
            let (status, body) = gw.get("/v1/grids?division=159904&limit=50").await;
            assert_eq!(status, 200, "{body}");
        })
        .await;
        let p50 = m.percentile(0.5).as_secs_f64() * 1e3;
        out.push_str(&format!(
            "| {n} | {p50:.1} | {:.1} | {:.2}× | {} ms |\n",
            m.percentile(0.99).as_secs_f64() * 1e3,
            p50 / DELAY_MS,
            n * 20
        ));
    }
    Ok(out)
}

/// A bounded load on loopback with one source failing on every call:
/// requests that do not need it must see no 5xx.
async fn load_with_a_failing_source() -> anyhow::Result<String> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CLIENTS: usize = 8;
    const REQUESTS: usize = 250;
    let gw = Arc::new(
        ConfigDir::new()
            .with_pool_instances(128)
            .with_huimin()
            .with_misbehaving("broken", "trap", "159901", "")
            .start()
            .await,
    );
    let (healthy_5xx, healthy_ok, broken_5xx) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let began = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS * 2 {
        let (gw, h5, hok, b5) = (
            gw.clone(),
            healthy_5xx.clone(),
            healthy_ok.clone(),
            broken_5xx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..REQUESTS {
                if c % 2 == 0 {
                    let status = gw
                        .get("/v1/grids?division=150103001&limit=20")
                        .await
                        .0
                        .as_u16();
                    if status >= 500 {
                        h5.fetch_add(1, Ordering::Relaxed);
                    } else if status == 200 {
                        hok.fetch_add(1, Ordering::Relaxed);
                    }
                } else if gw.get("/v1/grids?division=159901").await.0.as_u16() >= 500 {
                    b5.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = began.elapsed().as_secs_f64();
    let total = CLIENTS * 2 * REQUESTS;
    Ok(format!(
        "\nLoad with one source failing: {CLIENTS} clients on Huimin + {CLIENTS} clients on a source that traps on every call, {REQUESTS} requests each\n\n\
         | requests | seconds | req/s | Huimin 200 | Huimin 5xx | failing source 5xx |\n|---:|---:|---:|---:|---:|---:|\n\
         | {total} | {secs:.1} | {:.0} | {} | {} | {} |\n",
        total as f64 / secs,
        healthy_ok.load(Ordering::Relaxed),
        healthy_5xx.load(Ordering::Relaxed),
        broken_5xx.load(Ordering::Relaxed),
    ))
}
