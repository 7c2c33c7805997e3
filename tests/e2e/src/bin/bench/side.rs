//! `cargo xtask bench <seconds> side`: Lianqiao side by side with what a
//! user would otherwise run, in one run on one machine.
//!
//! - **bare server**: minimal axum + sqlx-sqlite + serde_json running the
//!   statement `district-sql` generates for the grids route and returning
//!   the same rows as JSON — the floor for SQL routes;
//! - **simulator directly** and **nginx** (1 worker, keep-alive upstream,
//!   no cache) in front of it — the floor and the usual alternative for
//!   routes served by HTTP sources;
//! - **Lianqiao** (release binary, Huimin on SQLite and both simulators,
//!   policy, masking and audit on, a city-level token) on grids,
//!   divisions, members, statistics and `/healthz`.
//!
//! Servers run pinned to CPU 1 and this process (the load generator) to
//! CPU 0. Saturation throughput is measured in interleaved rounds (every
//! target once per round, the order rotating), so drift in the machine's
//! speed hits all alike; each round gives one ratio per route against its
//! baseline, and the table reports the median and range of those ratios.
//! Latency comes from an open-loop generator at a fixed rate, measured
//! from each request's scheduled time (no coordinated omission), and from
//! one client. CPU, context switches and RSS come from `/proc`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lianqiao_e2e::{ConfigDir, free_port, huimin, token, workspace_root};

use crate::load::{self, Target};
use crate::{GRIDS_SQL, ProcStats, pin_to_first_cpu};

/// Rounds of the saturation comparison.
const ROUNDS: usize = 5;
/// Connections of the saturation runs (the issue's `wrk -c16`).
const CONNECTIONS: usize = 16;
/// The fixed rate of the open-loop latency runs, requests per second.
const PACED_RATE: f64 = 200.0;

/// A server process of the comparison, killed when dropped.
struct Server {
    child: Child,
    /// Every process whose CPU counts for this server (nginx: master and
    /// workers, plus the simulator behind it).
    pids: Vec<u32>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn on_cpu1(program: &Path) -> Command {
    let mut command = Command::new("taskset");
    command.args(["-c", "1"]).arg(program);
    command
}

async fn wait_listening(addr: SocketAddr, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let began = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            anyhow::bail!("{what} exited ({status}) before listening");
        }
        anyhow::ensure!(
            began.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = workspace_root().join("target/release").join(name);
    anyhow::ensure!(
        path.exists(),
        "{} is missing (cargo xtask bench builds it)",
        path.display()
    );
    Ok(path)
}

async fn simulator(kind: &str) -> anyhow::Result<(Server, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let mut command = on_cpu1(&release_binary("lianqiao-sim")?);
    command.args([kind, "--listen", &addr.to_string()]);
    if kind == "city-platform" {
        // The baseline: rate limit off, tokens that outlive the run.
        command.args(["--rate-limit", "1000000000", "--token-ttl-secs", "86400"]);
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_listening(addr, &mut child, kind).await?;
    let pids = vec![child.id()];
    Ok((Server { child, pids }, addr))
}

/// nginx with one worker in front of `upstream`, keep-alive both ways,
/// no cache, no access log.
async fn nginx(
    upstream: SocketAddr,
    dir: &Path,
    behind: u32,
) -> anyhow::Result<(Server, SocketAddr)> {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         upstream sim {{ server {upstream}; keepalive 32; }}\n\
         server {{\n    listen {addr};\n    keepalive_requests 1000000;\n\
         location / {{ proxy_pass http://sim; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n}}\n"
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf)?;
    let mut child = on_cpu1(Path::new("nginx"))
        .args(["-c", &file.display().to_string(), "-p", &d.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("nginx: {e} (cargo xtask bench installs nginx-light)"))?;
    wait_listening(addr, &mut child, "nginx").await?;
    let mut pids = vec![child.id(), behind];
    pids.extend(children_of(child.id()));
    Ok((Server { child, pids }, addr))
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `lianqiao-bench bare-server <sqlite file> <port>`: the floor for SQL
/// routes (run as a child of the benchmark, pinned like the gateway).
pub fn bare_server(db: &str, port: u16) -> anyhow::Result<()> {
    use axum::extract::{Query, State};
    use axum::response::IntoResponse;
    use sqlx::{Column, Row, TypeInfo};

    async fn grids(
        State(pool): State<sqlx::SqlitePool>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        let division = q.get("division").cloned().unwrap_or_default();
        let limit: i64 = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
        let rows = match sqlx::query(GRIDS_SQL)
            .bind(format!("{division}%"))
            .bind(limit)
            .fetch_all(&pool)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                    .into_response();
            }
        };
        let data: Vec<serde_json::Map<String, serde_json::Value>> = rows
            .iter()
            .map(|row| {
                row.columns()
                    .iter()
                    .map(|c| {
                        let i = c.ordinal();
                        let value = match c.type_info().name() {
                            "INTEGER" => row
                                .try_get::<Option<i64>, _>(i)
                                .ok()
                                .flatten()
                                .map_or(serde_json::Value::Null, Into::into),
                            _ => row
                                .try_get::<Option<String>, _>(i)
                                .ok()
                                .flatten()
                                .map_or(serde_json::Value::Null, Into::into),
                        };
                        (c.name().to_string(), value)
                    })
                    .collect()
            })
            .collect();
        axum::Json(serde_json::json!({ "data": data })).into_response()
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db)
            .read_only(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let app = axum::Router::new()
            .route("/grids", axum::routing::get(grids))
            .with_state(pool);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

async fn bare() -> anyhow::Result<(Server, SocketAddr)> {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut child = on_cpu1(&std::env::current_exe()?)
        .args([
            "bare-server",
            &huimin().1.display().to_string(),
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_listening(addr, &mut child, "the bare server").await?;
    let pids = vec![child.id()];
    Ok((Server { child, pids }, addr))
}

/// How many distinct queries each route cycles through: more than a
/// route answers in a run, so none repeats while it is measured.
const DISTINCT: usize = 40_000;

/// The distinct queries of the headline mode: (division, limit) pairs a
/// user could ask, from the divisions that exist.
struct Distinct {
    /// Huimin's district, streets, communities and every tenth grid: where
    /// grids and members are.
    huimin: Vec<String>,
    /// The city's districts, streets and communities (the city
    /// platform's registry): parents to list divisions of, divisions to
    /// count in.
    city: Vec<String>,
}

impl Distinct {
    async fn of(city_platform: SocketAddr, bearer: &str) -> anyhow::Result<Distinct> {
        let district = &huimin().0;
        let mut huimin: Vec<String> = district.divisions.iter().map(|d| d.code.clone()).collect();
        huimin.extend(district.grids.iter().step_by(10).map(|g| g.code.clone()));
        let auth = format!("Bearer {bearer}");
        let children = |parent: String| {
            let auth = auth.clone();
            async move {
                let url = format!("http://{city_platform}/divisions?parentCode={parent}&limit=500");
                let (status, body) =
                    lianqiao_e2e::http_get_with(&url, &[("authorization", auth.as_str())]).await?;
                anyhow::ensure!(status == 200, "{url}: {status}");
                let json: serde_json::Value = serde_json::from_str(&body)?;
                Ok::<_, anyhow::Error>(
                    json["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| d["code"].as_str().map(str::to_string))
                        .collect::<Vec<String>>(),
                )
            }
        };
        let districts = children("150100".into()).await?;
        let mut city = districts.clone();
        for d in districts {
            let streets = children(d).await?;
            for street in &streets {
                city.extend(children(street.clone()).await?);
            }
            city.extend(streets);
        }
        anyhow::ensure!(
            huimin.len() > 50 && city.len() > 50,
            "too few divisions for distinct queries ({} in Huimin, {} in the city)",
            huimin.len(),
            city.len()
        );
        Ok(Distinct { huimin, city })
    }

    fn len(&self) -> usize {
        DISTINCT
    }

    /// Request n: the n-th division of `codes` (cycling) with a limit
    /// from 10 to 100 that changes each time the divisions come round, so
    /// no (division, limit) pair repeats within `DISTINCT` requests.
    fn pairs(codes: &[String]) -> impl Iterator<Item = (&str, usize)> {
        (0..DISTINCT).map(|n| (codes[n % codes.len()].as_str(), 10 + (n / codes.len()) % 91))
    }

    /// The distinct paths of the route whose identical path is `path`: a
    /// route and its baseline ask the same divisions and limits in the
    /// same order (the bare server one row more, as the gateway asks its
    /// source to learn whether there is a next page).
    fn paths_like(&self, path: &str) -> Vec<String> {
        let route = path.split('?').next().unwrap_or(path);
        match route {
            "/grids" => Self::pairs(&self.huimin)
                .map(|(d, l)| format!("/grids?division={d}&limit={}", l + 1))
                .collect(),
            "/v1/grids" => Self::pairs(&self.huimin)
                .map(|(d, l)| format!("/v1/grids?division={d}&limit={l}"))
                .collect(),
            "/divisions" => Self::pairs(&self.city)
                .map(|(d, l)| format!("/divisions?parentCode={d}&limit={l}"))
                .collect(),
            "/v1/divisions" => Self::pairs(&self.city)
                .map(|(d, l)| format!("/v1/divisions?parent={d}&limit={l}"))
                .collect(),
            "/v1/members" => Self::pairs(&self.huimin)
                .map(|(d, l)| format!("/v1/members?division={d}&limit={l}"))
                .collect(),
            // 91 limits become a grouping below the division (by its
            // level) × 4 categories × 7 filters.
            "/v1/stats" => Self::pairs(&self.city)
                .map(|(d, l)| {
                    let level = match d.len() {
                        6 => ["&group_by=street", "&group_by=community"][l % 2],
                        9 => "&group_by=community",
                        _ => "",
                    };
                    let by = ["gender", "status", "household_role", "ethnicity"][(l / 2) % 4];
                    let filter = match (l / 8) % 7 {
                        0 => String::new(),
                        1 => format!("&gender={}", encoded("男")),
                        2 => format!("&gender={}", encoded("女")),
                        n => format!(
                            "&ethnicity={}",
                            encoded(["蒙古族", "汉族", "回族", "满族"][n - 3])
                        ),
                    };
                    format!("/v1/stats?metric=members.count&division={d}{level}&by={by}{filter}")
                })
                .collect(),
            // Nothing to vary (`/healthz`).
            _ => vec![path.to_string()],
        }
    }
}

/// `text` percent-encoded for a query string.
fn encoded(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// A bearer token from the city platform simulator (client credentials).
async fn city_token(city: SocketAddr) -> anyhow::Result<String> {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(city).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::post("/oauth/token")
        .header("host", "bench")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(bytes::Bytes::from_static(
            b"grant_type=client_credentials&client_id=demo&client_secret=demo-secret",
        )))?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    json["access_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no access_token in {json}"))
}

/// One GET with `target`'s headers: status and body length.
async fn probe(target: &Target) -> anyhow::Result<(u16, usize)> {
    let mut headers: Vec<(&str, &str)> = target
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers.retain(|(k, _)| *k != "host");
    let (status, body) =
        lianqiao_e2e::http_get_with(&format!("http://{}{}", target.addr, target.path), &headers)
            .await?;
    Ok((status, body.len()))
}

struct Row {
    name: &'static str,
    target: Target,
    /// The row's ratios are against this row (index, label); none for
    /// baselines.
    base: Option<(usize, &'static str)>,
    pids: Vec<u32>,
    rates: Vec<f64>,
    /// Every saturation round's outcome, merged (for its errors).
    seen: load::Outcome,
    one_client_p50: Duration,
    cpu_us: Vec<f64>,
    system_us: Vec<f64>,
    switches: Vec<f64>,
}

/// Rows the others are compared with.
const BARE: Option<(usize, &str)> = Some((0, "bare"));
const NGINX: Option<(usize, &str)> = Some((3, "nginx"));

/// Smallest and largest of `values`.
fn extremes(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    (lo, hi)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn vm_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// p50 of `n` × (write 512 bytes, `fdatasync`) in `dir`: what one durable
/// audit commit cannot go below on this disk.
fn fsync_floor(dir: &Path, n: usize) -> anyhow::Result<Duration> {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("fsync-probe"))?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let began = Instant::now();
        file.write_all(&[7u8; 512])?;
        file.sync_data()?;
        samples.push(began.elapsed());
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

pub async fn side_by_side(seconds: u64) -> anyhow::Result<String> {
    anyhow::ensure!(
        pin_to_first_cpu(),
        "the side-by-side benchmark needs two CPUs and taskset (servers on CPU 1, load on CPU 0)"
    );
    let window = Duration::from_secs(seconds.max(1));
    let warmup = Duration::from_secs(1);
    let scratch = tempfile::tempdir()?;

    let (bare_server, bare_addr) = bare().await?;
    let (city_sim, city_addr) = simulator("city-platform").await?;
    let (party_sim, party_addr) = simulator("party-link").await?;
    let nginx_dir = scratch.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    let (nginx_server, nginx_addr) = nginx(city_addr, &nginx_dir, city_sim.pids[0]).await?;

    let config = ConfigDir::new()
        .with_huimin()
        .with_upstream_addrs(party_addr, city_addr);
    let fsync = fsync_floor(&config.main_file().with_file_name(""), 200)?;
    let spawned = Instant::now();
    let mut gateway = config
        .spawn_binary_under(&["taskset", "-c", "1"], "release", &[])
        .await;
    let listening = spawned.elapsed();
    let gw_addr: SocketAddr = format!("127.0.0.1:{}", gateway.port).parse()?;
    let gw_pid = gateway.child.id();

    // Each route as the level that uses it: the city lists grids and
    // divisions and counts members (it may not list them); the district
    // lists its members, masked.
    let city = token("city", "1501", &[]);
    let district = token("district", "150103", &[]);
    let as_caller = |path: &str, token: &str, purpose: &str| Target {
        addr: gw_addr,
        path: path.to_string(),
        distinct: Arc::from(Vec::new()),
        sent: Arc::default(),
        headers: vec![
            ("authorization".into(), format!("Bearer {token}")),
            ("x-purpose".into(), purpose.into()),
        ],
        min_body: 0,
    };
    let lianqiao = |path: &str| as_caller(path, &city, "case-handling");
    let grids = "/v1/grids?division=150103001&limit=50";
    let first = probe(&lianqiao(grids)).await?;
    let cold_start = spawned.elapsed();
    anyhow::ensure!(
        first.0 == 200,
        "the gateway answered {} to {grids}",
        first.0
    );
    let rss_idle = vm_kib(gw_pid, "VmRSS:");

    let bearer = city_token(city_addr).await?;
    let upstream = |addr: SocketAddr| Target {
        addr,
        path: "/divisions?parentCode=150103".into(),
        distinct: Arc::from(Vec::new()),
        sent: Arc::default(),
        headers: vec![("authorization".into(), format!("Bearer {bearer}"))],
        min_body: 0,
    };
    let row = |name, target, base, pids: Vec<u32>| Row {
        name,
        target,
        base,
        pids,
        rates: vec![],
        seen: load::Outcome::default(),
        one_client_p50: Duration::ZERO,
        cpu_us: vec![],
        system_us: vec![],
        switches: vec![],
    };
    let gw = vec![gw_pid];
    let mut rows = vec![
        row(
            "bare server: axum + sqlx-sqlite + serde_json, the grids statement",
            Target {
                addr: bare_addr,
                path: "/grids?division=150103001&limit=51".into(),
                distinct: Arc::from(Vec::new()),
                sent: Arc::default(),
                headers: vec![],
                min_body: 0,
            },
            None,
            bare_server.pids.clone(),
        ),
        row(
            "Lianqiao GET /v1/grids?division=150103001&limit=50 (district-sql, SQLite)",
            lianqiao(grids),
            BARE,
            gw.clone(),
        ),
        row(
            "city platform simulator directly: /divisions?parentCode=150103",
            upstream(city_addr),
            None,
            city_sim.pids.clone(),
        ),
        row(
            "nginx (1 worker, keep-alive, no cache) in front of the simulator",
            upstream(nginx_addr),
            None,
            nginx_server.pids.clone(),
        ),
        row(
            "Lianqiao GET /v1/divisions?parent=150103 (city-platform)",
            lianqiao("/v1/divisions?parent=150103"),
            NGINX,
            gw.clone(),
        ),
        row(
            "Lianqiao GET /v1/members?division=150103&limit=50 (party-link, district token, masked)",
            as_caller(
                "/v1/members?division=150103&limit=50",
                &district,
                "case-handling",
            ),
            NGINX,
            gw.clone(),
        ),
        row(
            "Lianqiao GET /v1/stats?metric=members.count&division=1501&group_by=district (party-link, city token, protected)",
            as_caller(
                "/v1/stats?metric=members.count&division=1501&group_by=district",
                &city,
                "statistics",
            ),
            NGINX,
            gw.clone(),
        ),
        row(
            "Lianqiao GET /healthz (the HTTP stack alone)",
            lianqiao("/healthz"),
            NGINX,
            gw.clone(),
        ),
    ];
    // Every route answers 200 with a body before it is loaded; half the
    // first body's length is the least a loaded answer may carry.
    for r in &mut rows {
        let (status, len) = probe(&r.target).await?;
        anyhow::ensure!(status == 200, "{} answered {status}", r.name);
        r.target.min_body = len / 2;
    }
    // The same routes, every request a different division and limit (and
    // grouping, for statistics), as users ask: the headline.
    let queries = Distinct::of(city_addr, &bearer).await?;
    let mut distinct_rows: Vec<Row> = rows
        .iter()
        .map(|r| {
            let mut target = r.target.clone();
            target.distinct = Arc::from(queries.paths_like(&r.target.path));
            // Answers vary in size (an empty community is a real answer).
            target.min_body = 0;
            row(r.name, target, r.base, r.pids.clone())
        })
        .collect();
    for r in &distinct_rows {
        let (status, _) = probe(&r.target).await?;
        anyhow::ensure!(
            status == 200,
            "{} answered {status} to {}",
            r.name,
            r.target.distinct[0]
        );
    }

    let mut rss_loaded = 0;
    let distinct_table = measure(
        &mut distinct_rows,
        &gw,
        gw_pid,
        &mut rss_loaded,
        warmup,
        window,
    )
    .await;
    let identical_table = measure(&mut rows, &gw, gw_pid, &mut rss_loaded, warmup, window).await;
    let instances = instance_cost(gateway.admin).await;
    gateway.terminate();
    drop(party_sim);

    let one_client = |rows: &[Row]| {
        let (bare_p50, gw_p50) = (rows[0].one_client_p50, rows[1].one_client_p50);
        format!(
            "Lianqiao p50 {:.0} µs = bare server {:.0} µs + {:.0} µs",
            gw_p50.as_secs_f64() * 1e6,
            bare_p50.as_secs_f64() * 1e6,
            (gw_p50.as_secs_f64() - bare_p50.as_secs_f64()) * 1e6,
        )
    };
    let mut out = format!(
        "\nSide by side ({ROUNDS} interleaved rounds of {seconds} s after 1 s warm-up per route, \
         {CONNECTIONS} connections, closed loop; servers on CPU 1, load generator on CPU 0; release builds)\n\n\
         Distinct queries (the headline): request n of a run asks the n-th of {} paths per route — \
         a different division, limit and grouping each time, the same sequence for a route and its baseline; \
         no coalescing or cache hit shares work between them.\n{distinct_table}\n\
         Identical requests (second: every request the same, which coalescing and caches flatter):\n{identical_table}",
        queries.len()
    );
    out.push_str(&format!(
        "\nGrids at 1 client: distinct {}; identical {}; one fsync on this disk (p50 of 200, write 512 B + fdatasync in the audit's directory) {:.0} µs.\n\
         Gateway RSS: {:.1} MiB idle (after start and one request), {:.1} MiB peak under load. Cold start (spawn to listening / to the first grids answer): {:.0} ms / {:.0} ms.\n",
        one_client(&distinct_rows),
        one_client(&rows),
        fsync.as_secs_f64() * 1e6,
        rss_idle as f64 / 1024.0,
        rss_loaded as f64 / 1024.0,
        listening.as_secs_f64() * 1e3,
        cold_start.as_secs_f64() * 1e3,
    ));
    out.push_str(&instances);
    Ok(out)
}

/// What a fresh plugin instance per call cost over the whole run, per
/// source, from the gateway's own counters (`/metrics`): the share warm
/// instances would save.
async fn instance_cost(admin: u16) -> String {
    let url = format!("http://127.0.0.1:{admin}/metrics");
    let Ok((200, text)) = lianqiao_e2e::http_get_with(&url, &[]).await else {
        return "Plugin instances: /metrics did not answer.\n".into();
    };
    let series = |name: &str| -> HashMap<String, f64> {
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix("{source=\""))
            .filter_map(|l| {
                let (source, rest) = l.split_once('"')?;
                let value = rest.rsplit(' ').next()?.parse().ok()?;
                Some((source.to_string(), value))
            })
            .collect()
    };
    let calls = series("lianqiao_plugin_instantiations_total");
    let seconds = series("lianqiao_plugin_instantiate_seconds_total");
    let mut sources: Vec<_> = calls.iter().filter(|(_, n)| **n > 0.0).collect();
    sources.sort_by(|a, b| a.0.cmp(b.0));
    let each: Vec<String> = sources
        .iter()
        .map(|(source, n)| {
            let s = seconds.get(*source).copied().unwrap_or(0.0);
            format!("{source} {:.0} calls, {:.1} µs each", n, s / **n * 1e6)
        })
        .collect();
    format!(
        "Plugin instances (one per call, wall time to instantiate): {}.\n",
        each.join("; ")
    )
}

/// Saturation rounds, then latency, for `rows`: the two tables.
async fn measure(
    rows: &mut [Row],
    gw: &[u32],
    gw_pid: u32,
    rss_loaded: &mut u64,
    warmup: Duration,
    window: Duration,
) -> String {
    for round in 0..ROUNDS {
        for k in 0..rows.len() {
            let i = (k + round) % rows.len();
            let r = &mut rows[i];
            let before: Vec<ProcStats> = r.pids.iter().map(|p| ProcStats::of(*p)).collect();
            let seen = load::saturate(&r.target, CONNECTIONS, warmup, window).await;
            let after: Vec<ProcStats> = r.pids.iter().map(|p| ProcStats::of(*p)).collect();
            if r.pids == gw {
                *rss_loaded = (*rss_loaded).max(vm_kib(gw_pid, "VmHWM:"));
            }
            // CPU over warm-up and window alike, per answer in the window
            // scaled to the whole run.
            let spent = after
                .iter()
                .zip(&before)
                .map(|(a, b)| a.since(b))
                .fold(ProcStats::default(), |s, d| s.add(&d));
            let answers = (seen.ok + seen.error_count()).max(1) as f64
                * (warmup + window).as_secs_f64()
                / window.as_secs_f64();
            r.rates.push(seen.rate());
            r.cpu_us.push(spent.cpu().as_secs_f64() * 1e6 / answers);
            r.system_us.push(spent.system.as_secs_f64() * 1e6 / answers);
            r.switches.push(spent.switches as f64 / answers);
            r.seen.merge(seen);
        }
    }

    // Latency: one client, then open loop at a fixed rate.
    let mut latency = String::from(
        "\n| route | 1 client p50 µs | 1 client p99 µs | open loop 200/s p50 µs | p99 µs | p99.9 µs | errors |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows.iter_mut() {
        let single = load::saturate(&r.target, 1, warmup, window).await;
        let paced = load::paced(&r.target, PACED_RATE, 64, warmup, window).await;
        r.one_client_p50 = single.percentile(0.5);
        latency.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} |\n",
            r.name,
            single.percentile(0.5).as_secs_f64() * 1e6,
            single.percentile(0.99).as_secs_f64() * 1e6,
            paced.percentile(0.5).as_secs_f64() * 1e6,
            paced.percentile(0.99).as_secs_f64() * 1e6,
            paced.percentile(0.999).as_secs_f64() * 1e6,
            single.error_count() + paced.error_count(),
        ));
    }
    let mut out = String::from(
        "\n| route | req/s (median of rounds) | range | × baseline (median) | range | errors | CPU µs/req | of which system | context switches/req |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows.iter() {
        let (ratio, range) = match r.base {
            Some((base, key)) => {
                let ratios: Vec<f64> = r
                    .rates
                    .iter()
                    .zip(&rows[base].rates)
                    .map(|(a, b)| a / b)
                    .collect();
                let (lo, hi) = extremes(&ratios);
                (
                    format!("{:.3}× ({key})", median(&ratios)),
                    format!("{lo:.3}–{hi:.3}"),
                )
            }
            None => ("baseline".into(), String::new()),
        };
        let (lo, hi) = extremes(&r.rates);
        let errors = if r.seen.errors.is_empty() {
            "0".to_string()
        } else {
            r.seen
                .errors
                .iter()
                .map(|(s, n)| {
                    format!(
                        "{n}×{}",
                        if *s == 0 {
                            "conn".into()
                        } else {
                            s.to_string()
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {} | {:.0} | {lo:.0}–{hi:.0} | {ratio} | {range} | {errors} | {:.0} | {:.0} | {:.1} |\n",
            r.name,
            median(&r.rates),
            median(&r.cpu_us),
            median(&r.system_us),
            median(&r.switches),
        ));
    }
    out.push_str(&latency);
    out
}
