//! `cargo xtask bench region`: the whole region, side by side with the
//! five-source demo, in one run (release builds).
//!
//! - The demo: Huimin, Saihan and Jining (SQLite), the party-link system
//!   and Hohhot's platform, as `side` runs them.
//! - The region: the generated 103 districts at full scale (Huimin-,
//!   Saihan- and Jining-like, three schemas), the party-link system over
//!   all of them and four city platforms: 108 sources.
//! - A slow district: one district answering in 10 s.
//! - A stress case: 295 small districts, 300 sources.
//!
//! Simulators and the gateway run as release processes on CPU 1, the
//! clients here on CPU 0.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lianqiao_e2e::{ConfigDir, GatewayProcess, free_port, token, workspace_root};
use lianqiao_sim::generate::region::Scale;
use lianqiao_sim::generate::region_config::{self as rc, platform_cities};
use serde_json::Value;

/// The figures before this work (105 sources, release build).
const BEFORE_WALK_GRIDS_PER_S: f64 = 72_176.0 / 30.0;
const BEFORE_PAGE_P50_MS: f64 = 192.0;

/// Child processes killed when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sim(args: &[String]) -> anyhow::Result<Child> {
    let bin = workspace_root().join("target/release/lianqiao-sim");
    anyhow::ensure!(bin.exists(), "{} is missing", bin.display());
    Ok(Command::new("taskset")
        .args(["-c", "1"])
        .arg(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

async fn listening(addr: &str) -> anyhow::Result<()> {
    let began = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            began.elapsed() < Duration::from_secs(120),
            "{addr} did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The region's simulators: party-link over its first `count` districts,
/// a platform per platform city.
async fn region_upstreams(count: usize, scale: &str) -> anyhow::Result<(Procs, rc::Upstreams)> {
    let mut procs = Procs(vec![]);
    let party = format!("127.0.0.1:{}", free_port());
    procs.0.push(sim(&[
        "party-link".into(),
        "--listen".into(),
        party.clone(),
        "--region".into(),
        count.to_string(),
        "--scale".into(),
        scale.into(),
    ])?);
    let mut cities = Vec::new();
    for city in platform_cities() {
        let addr = format!("127.0.0.1:{}", free_port());
        procs.0.push(sim(&[
            "city-platform".into(),
            "--listen".into(),
            addr.clone(),
            "--region".into(),
            count.to_string(),
            "--scale".into(),
            scale.into(),
            "--city".into(),
            city.into(),
            "--client".into(),
            format!("city-{city}=demo-secret"),
            "--rate-limit".into(),
            "1000000".into(),
            "--token-ttl-secs".into(),
            "86400".into(),
        ])?);
        cities.push((city.to_string(), addr));
    }
    listening(&party).await?;
    for (_, a) in &cities {
        listening(a).await?;
    }
    Ok((
        procs,
        rc::Upstreams {
            party_link: party,
            city_platforms: cities,
        },
    ))
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET as `token`: status, body, time.
async fn get(c: &HttpClient, port: u16, path: &str, token: &str) -> (u16, Value, Duration) {
    let began = Instant::now();
    let request = hyper::Request::builder()
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-purpose", "case-handling")
        .body(Empty::new());
    let Ok(request) = request else {
        return (0, Value::Null, began.elapsed());
    };
    match c.request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (
                status,
                serde_json::from_slice(&body).unwrap_or(Value::Null),
                began.elapsed(),
            )
        }
        Err(_) => (0, Value::Null, began.elapsed()),
    }
}

async fn readyz(c: &HttpClient, port: u16) -> Value {
    get(c, port, "/readyz", "").await.1
}

/// Time from `since` until every one of `n` sources is up.
async fn all_up(c: &HttpClient, port: u16, n: usize, since: Instant) -> anyhow::Result<Duration> {
    loop {
        let r = readyz(c, port).await;
        if r["summary"]["up"].as_u64() == Some(n as u64) {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(180),
            "not every source came up: {}",
            r["summary"]
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Until the registry is complete: its size and the time.
async fn registry_complete(
    c: &HttpClient,
    port: u16,
    since: Instant,
) -> anyhow::Result<(u64, Duration)> {
    loop {
        let r = readyz(c, port).await;
        if r["policy"]["registry_complete"] == true {
            return Ok((
                r["policy"]["registry_divisions"].as_u64().unwrap_or(0),
                since.elapsed(),
            ));
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(600),
            "the registry did not complete: {}",
            r["policy"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(k: u64) -> String {
    format!("{:.1} MiB", k as f64 / 1024.0)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn spawn(dir: &ConfigDir) -> (GatewayProcess, Instant) {
    let began = Instant::now();
    let gw = dir
        .spawn_binary_under(
            &["taskset", "-c", "1"],
            "release",
            &[
                ("LIANQIAO_STATS_KEY", "bench-region-stats-key"),
                ("LIANQIAO_CURSOR_KEY", "bench-region-cursor-key"),
            ],
        )
        .await;
    (gw, began)
}

/// Health checks and the registry on, as in production.
fn production(dir: ConfigDir) -> ConfigDir {
    dir.edit_main("health_interval_s = 0", "health_interval_s = 30")
        .edit_main("registry_refresh_s = 0", "registry_refresh_s = 600")
}

/// What one gateway does for region and district users.
struct Figures {
    sources: usize,
    start_all_up: Duration,
    down_at_idle: u64,
    rss_idle_kib: u64,
    rss_peak_kib: u64,
    threads: u64,
    registry: u64,
    page_p50: Duration,
    distinct_p50: Duration,
    page_rows_read: u64,
    page_sources_asked: usize,
    cursor_bytes: usize,
    walk: (usize, Duration, usize),
}

/// Measure one running gateway: a region (or city) page, distinct pages,
/// a walk of every grid under `scope`.
async fn figures(
    c: &HttpClient,
    gw: &GatewayProcess,
    scope: &str,
    sources: usize,
    start_all_up: Duration,
    codes: &[String],
) -> anyhow::Result<Figures> {
    let pid = gw.child.id();
    let boss = token("region", "15", &[]);
    let r = readyz(c, gw.port).await;
    let registry = r["policy"]["registry_divisions"].as_u64().unwrap_or(0);
    let down_at_idle = r["summary"]["down"].as_u64().unwrap_or(u64::MAX);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle_kib = kib(pid, "VmRSS:");
    let threads = kib(pid, "Threads:");
    // The same first page, 100 times (coalesced and cached: labelled).
    let page = format!("/v1/grids?division={scope}&limit=50");
    let (_, first, _) = get(c, gw.port, &page, &boss).await;
    let page_rows_read = first["sources"]
        .as_array()
        .map(|s| s.iter().map(|x| x["rows"].as_u64().unwrap_or(0)).sum())
        .unwrap_or(0);
    let page_sources_asked = first["sources"].as_array().map_or(0, Vec::len);
    let cursor_bytes = first["page"]["next_cursor"].as_str().map_or(0, str::len);
    let mut same = Vec::new();
    for _ in 0..100 {
        same.push(get(c, gw.port, &page, &boss).await.2);
    }
    // Distinct: every request another division of the scope and limit.
    let mut distinct = Vec::new();
    for i in 0..200 {
        let code = &codes[(i * 7) % codes.len()];
        let path = format!("/v1/grids?division={code}&limit={}", 40 + i % 21);
        let (status, _, t) = get(c, gw.port, &path, &boss).await;
        anyhow::ensure!(status == 200, "{path}: {status}");
        distinct.push(t);
    }
    // Walk every grid of the scope, 500 a page.
    let began = Instant::now();
    let mut rows = 0;
    let mut pages = 0;
    let mut path = format!("/v1/grids?division={scope}&limit=500&fields=name");
    loop {
        let (status, body, _) = get(c, gw.port, &path, &boss).await;
        anyhow::ensure!(status == 200, "{path}: {status} {body}");
        rows += body["data"].as_array().map_or(0, Vec::len);
        pages += 1;
        match body["page"]["next_cursor"].as_str() {
            Some(cur) => {
                path = format!("/v1/grids?division={scope}&limit=500&fields=name&cursor={cur}")
            }
            None => break,
        }
    }
    let walk = (rows, began.elapsed(), pages);
    Ok(Figures {
        sources,
        start_all_up,
        down_at_idle,
        rss_idle_kib,
        rss_peak_kib: kib(pid, "VmHWM:"),
        threads,
        registry,
        page_p50: percentile(&mut same, 0.5),
        distinct_p50: percentile(&mut distinct, 0.5),
        page_rows_read,
        page_sources_asked,
        cursor_bytes,
        walk,
    })
}

/// 16 region clients (mixed lists, cursor walks, statistics) for
/// `window`, and `district_clients` district users beside them; without
/// region load first. (partial answers, region rate, district p99
/// without and with region load).
/// `pace`: none, each district user sends its next request when the last
/// is answered (closed loop: two users take every cycle the region
/// leaves them); some, each sends one request per `pace` and its latency
/// runs from when the request was due (open loop, as people arrive,
/// without coordinated omission).
async fn under_load(
    port: u16,
    districts: &[String],
    cities: &[String],
    window: Duration,
    pace: Option<Duration>,
) -> (u64, u64, f64, Duration, Duration) {
    let district_users = |window: Duration| {
        let districts = districts.to_vec();
        async move {
            let mut all = Vec::new();
            let tasks: Vec<_> = (0..2)
                .map(|k| {
                    let districts = districts.clone();
                    tokio::spawn(async move {
                        let c = client();
                        let mut times = Vec::new();
                        let began = Instant::now();
                        let mut i = k;
                        let mut n = 0u32;
                        while began.elapsed() < window {
                            let d = &districts[i % districts.len()];
                            let user = token("district", d, &[]);
                            let path = format!("/v1/grids?division={d}&limit={}", 20 + i % 30);
                            match pace {
                                None => times.push(get(&c, port, &path, &user).await.2),
                                Some(pace) => {
                                    let due = began + pace * n;
                                    tokio::time::sleep_until(due.into()).await;
                                    get(&c, port, &path, &user).await;
                                    times.push(due.elapsed());
                                    n += 1;
                                }
                            }
                            i += 2;
                        }
                        times
                    })
                })
                .collect();
            for t in tasks {
                all.extend(t.await.unwrap_or_default());
            }
            all
        }
    };
    let mut alone = district_users(window).await;
    let alone_p99 = percentile(&mut alone, 0.99);
    let region_clients: Vec<_> = (0..16)
        .map(|k| {
            let cities = cities.to_vec();
            tokio::spawn(async move {
                let c = client();
                let boss = token("region", "15", &[]);
                let (mut answers, mut partial) = (0u64, 0u64);
                // Why answers were partial: (kind of request, source status) → sources.
                let mut why: HashMap<(usize, String), u64> = HashMap::new();
                let began = Instant::now();
                let mut i = k;
                while began.elapsed() < window {
                    let city = &cities[i % cities.len()];
                    let q = match i % 4 {
                        0 => format!("/v1/grids?division=15&limit={}", 30 + i % 40),
                        1 => format!("/v1/grids?division={city}&limit=200"),
                        2 => {
                            "/v1/stats?metric=grids.count&division=15&group_by=district".to_string()
                        }
                        _ => {
                            format!("/v1/stats?metric=grids.count&division={city}&group_by=street")
                        }
                    };
                    let mut path = q.clone();
                    for _ in 0..3 {
                        let (_, body, _) = get(&c, port, &path, &boss).await;
                        answers += 1;
                        partial += u64::from(body["partial"] != false);
                        for source in body["sources"].as_array().into_iter().flatten() {
                            let status = source["status"].as_str().unwrap_or("?");
                            if !matches!(status, "ok" | "skipped") {
                                *why.entry((
                                    i % 4,
                                    format!(
                                        "{status}: {}",
                                        source["error"]
                                            .as_str()
                                            .unwrap_or("")
                                            .chars()
                                            .take(60)
                                            .collect::<String>()
                                    ),
                                ))
                                .or_default() += 1;
                            }
                        }
                        match body["page"]["next_cursor"].as_str() {
                            Some(cur) => path = format!("{q}&cursor={cur}"),
                            None => break,
                        }
                    }
                    i += 16;
                }
                (answers, partial, why)
            })
        })
        .collect();
    let began = Instant::now();
    let mut with = district_users(window).await;
    let (mut answers, mut partial) = (0, 0);
    let mut why: HashMap<(usize, String), u64> = HashMap::new();
    for t in region_clients {
        let (a, p, w) = t.await.unwrap_or_default();
        answers += a;
        partial += p;
        for (k, n) in w {
            *why.entry(k).or_default() += n;
        }
    }
    // What made answers partial, by kind of request (stderr: for whoever
    // tunes the region, not for the table).
    let kinds = [
        "region page",
        "city page",
        "region statistic",
        "city statistic",
    ];
    let mut why: Vec<_> = why.into_iter().collect();
    why.sort();
    for ((kind, status), n) in why {
        eprintln!("partial: {} × {} — {status}", n, kinds[kind]);
    }
    let rate = answers as f64 / began.elapsed().as_secs_f64();
    (
        answers,
        partial,
        rate,
        alone_p99,
        percentile(&mut with, 0.99),
    )
}

/// Only the region under load (a started region, its registry stored by
/// an earlier run or fetched now): the figures a change to scheduling
/// moves, in a fraction of `region`'s time.
pub async fn region_under_load(count: usize) -> anyhow::Result<String> {
    let count = count.clamp(100, 103);
    let c = client();
    let data = workspace_root().join("target/bench/region-data");
    let (_sims, upstreams) = region_upstreams(count, "full").await?;
    // `LIANQIAO_BENCH_SERVER="wide_request_nice = 5\nmax_wide_source_calls = 2"`:
    // [server] settings to try, without a build.
    let mut dir = production(ConfigDir::new());
    if let Ok(extra) = std::env::var("LIANQIAO_BENCH_SERVER") {
        dir = dir.edit_main(
            "plaintext = true\n",
            &format!("plaintext = true\n{extra}\n"),
        );
    }
    let (dir, written, sources) = full_region(dir, upstreams, count, data).await;
    let (districts, cities) = codes_of(&written);
    let (gw, began) = spawn(&dir).await;
    all_up(&c, gw.port, sources, began).await?;
    registry_complete(&c, gw.port, began).await?;
    let rss_idle_kib = kib(gw.child.id(), "VmRSS:");
    // What each kind of region request costs alone (one client).
    let boss = token("region", "15", &[]);
    let mut alone = String::new();
    for (name, path) in [
        (
            "region page of 50",
            "/v1/grids?division=15&limit=50".to_string(),
        ),
        (
            "city page of 200",
            format!("/v1/grids?division={}&limit=200", cities[0]),
        ),
        (
            "region grids.count by district",
            "/v1/stats?metric=grids.count&division=15&group_by=district".to_string(),
        ),
        (
            "city grids.count by street",
            format!(
                "/v1/stats?metric=grids.count&division={}&group_by=street",
                cities[0]
            ),
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..7 {
            times.push(get(&c, gw.port, &path, &boss).await.2);
        }
        alone.push_str(&format!(
            "{name}: p50 {}; ",
            ms(percentile(&mut times, 0.5))
        ));
    }
    let mut out = format!("Alone, 1 client: {alone}\n");
    // District users as many as the CPU lets through (closed loop), then
    // at a rate people ask (each user one request per 25 ms, open loop).
    for (how, pace) in [
        ("closed loop", None),
        ("each 40/s, open loop", Some(Duration::from_millis(25))),
    ] {
        let (answers, partial, rate, alone_p99, with_p99) =
            under_load(gw.port, &districts, &cities, Duration::from_secs(20), pace).await;
        out.push_str(&format!(
            "Under load (20 s, {sources} sources{}): 16 region clients made {answers} answers, {rate:.0}/s, {partial} partial; 2 district users ({how}): p99 {} alone, {} with the region load ({:.2}x)\n",
            std::env::var("LIANQIAO_BENCH_SERVER")
                .map(|e| format!(", {}", e.replace('\n', ", ")))
                .unwrap_or_default(),
            ms(alone_p99),
            ms(with_p99),
            with_p99.as_secs_f64() / alone_p99.as_secs_f64().max(1e-9)
        ));
    }
    // Memory at region scale with what this run does (both load shapes).
    out.push_str(&format!(
        "Gateway RSS: {:.1} MiB idle after start, {:.1} MiB peak over the run, {:.1} MiB at the end\n",
        rss_idle_kib as f64 / 1024.0,
        kib(gw.child.id(), "VmHWM:") as f64 / 1024.0,
        kib(gw.child.id(), "VmRSS:") as f64 / 1024.0,
    ));
    Ok(out)
}

/// `dir` with the region at full scale written into it (the data under
/// `data`, reused when already written): the configuration, what was
/// written, and its number of sources.
async fn full_region(
    dir: ConfigDir,
    upstreams: rc::Upstreams,
    count: usize,
    data: std::path::PathBuf,
) -> (ConfigDir, rc::Written, usize) {
    let (dir, written) = dir
        .with_region_at(upstreams, count, Scale::Full, data, true, None, None)
        .await;
    let sources = written.districts.len() + 1 + platform_cities().len();
    (dir, written, sources)
}

fn codes_of(written: &rc::Written) -> (Vec<String>, Vec<String>) {
    let districts: Vec<String> = written.districts.iter().map(|d| d.2.clone()).collect();
    let mut cities: Vec<String> = written
        .districts
        .iter()
        .map(|d| d.1[..4].to_string())
        .collect();
    cities.sort();
    cities.dedup();
    (districts, cities)
}

pub async fn region(count: usize) -> anyhow::Result<String> {
    let count = count.clamp(100, 103);
    let c = client();
    let data = workspace_root().join("target/bench/region-data");
    let mut out = String::from("\n## The whole region (`cargo xtask bench region`)\n\n");

    // --- The five-source demo, as `side` runs it.
    let demo = {
        let (city_sim, city) = demo_sim("city-platform").await?;
        let (party_sim, party) = demo_sim("party-link").await?;
        let (saihan, jining) = lianqiao_e2e::saihan_jining_sqlite();
        let (saihan, jining) = (saihan.as_path(), jining.as_path());
        let dir = production(
            ConfigDir::new()
                .with_huimin()
                .with_demo_source("saihan", &lianqiao_e2e::sqlite_url(saihan))
                .with_demo_source("jining", &lianqiao_e2e::sqlite_url(jining))
                .with_upstream_addrs(party, city),
        );
        let (gw, began) = spawn(&dir).await;
        let up = all_up(&c, gw.port, 5, began).await?;
        registry_complete(&c, gw.port, began).await?;
        let codes = vec!["150103".to_string(), "150105".into(), "150103001".into()];
        let f = figures(&c, &gw, "1501", 5, up, &codes).await?;
        drop((city_sim, party_sim));
        f
    };

    // --- The region: 103 districts at full scale, 108 sources.
    let (sims, upstreams) = region_upstreams(count, "full").await?;
    let (dir, written, sources) =
        full_region(production(ConfigDir::new()), upstreams, count, data.clone()).await;
    let (districts, cities) = codes_of(&written);
    // First start: an empty registry store.
    let (gw, began) = spawn(&dir).await;
    let first_up = all_up(&c, gw.port, sources, began).await?;
    let (registry, registry_took) = registry_complete(&c, gw.port, began).await?;
    let first_peak = kib(gw.child.id(), "VmHWM:");
    drop(gw);
    // Second start: the stored registry.
    let (gw, began) = spawn(&dir).await;
    let up = all_up(&c, gw.port, sources, began).await?;
    // The stored registry loads beside the first health checks.
    let (_, stored_registry_loaded) = registry_complete(&c, gw.port, began).await?;
    let region = figures(&c, &gw, "15", sources, up, &districts).await?;
    // District users as many as the CPU lets through (closed loop: an
    // overload of its own), then at a rate people ask (40/s each).
    let mut loads = Vec::new();
    for (how, pace) in [
        ("closed loop", None),
        ("each 40/s, open loop", Some(Duration::from_millis(25))),
    ] {
        let figures = under_load(gw.port, &districts, &cities, Duration::from_secs(20), pace).await;
        loads.push((how, figures));
    }
    let peak_after_load = kib(gw.child.id(), "VmHWM:");
    drop(gw);

    // --- One district answering in 10 s.
    let slow_code = districts.last().cloned().unwrap_or_default();
    let slow = format!(
        "name = \"district-{slow_code}\"\ncoverage = [\"{slow_code}\"]\n\n[plugin]\npath = {:?}\n\n[limits]\nmemory_mib = 16\ndeadline_ms = 15000\n\n[plugin.settings]\nmode = \"slow\"\ndelay_ms = 10000\n",
        lianqiao_e2e::plugin_dir()
            .join("misbehave.wasm")
            .display()
            .to_string()
    );
    let dir = dir.source(&format!("district-{slow_code}"), &slow);
    let deadline_ms = 5000;
    let (gw, _) = spawn(&dir).await;
    all_up(&c, gw.port, sources - 1, Instant::now()).await.ok();
    let boss = token("region", "15", &[]);
    let mut slow_rows = Vec::new();
    for path in [
        "/v1/stats?metric=grids.count&division=15&group_by=district".to_string(),
        format!("/v1/grids?division={}&limit=500", &slow_code[..4]),
    ] {
        let (status, body, took) = get(&c, gw.port, &path, &boss).await;
        let named = body["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == format!("district-{slow_code}"))
            .map(|s| s["status"].as_str().unwrap_or("").to_string());
        slow_rows.push(format!(
            "| `{path}` | {status} | {} | partial: {} | the slow district: {} |",
            ms(took),
            body["partial"],
            named.unwrap_or_else(|| "not named".into())
        ));
    }
    drop(gw);
    drop(sims);

    // --- 300 sources: 295 small districts.
    let stress = {
        let (sims, upstreams) = region_upstreams(295, "small").await?;
        let (dir, written) = production(ConfigDir::new())
            .with_region_at(
                upstreams,
                295,
                Scale::Small,
                workspace_root().join("target/bench/region-300"),
                true,
                None,
                None,
            )
            .await;
        let sources = written.districts.len() + 1 + platform_cities().len();
        let (gw, began) = spawn(&dir).await;
        let up = all_up(&c, gw.port, sources, began).await?;
        registry_complete(&c, gw.port, began).await?;
        let (gw2, began) = {
            drop(gw);
            spawn(&dir).await
        };
        let up_stored = all_up(&c, gw2.port, sources, began).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = readyz(&c, gw2.port).await;
        let f = (
            sources,
            up,
            up_stored,
            r["summary"]["down"].as_u64().unwrap_or(u64::MAX),
            kib(gw2.child.id(), "VmRSS:"),
            r["policy"]["registry_divisions"].as_u64().unwrap_or(0),
        );
        drop(gw2);
        drop(sims);
        f
    };

    // --- The report.
    out.push_str(&format!(
        "Release builds, gateway and simulators on CPU 1, clients on CPU 0. The region: {} districts at full scale ({} grids; Huimin-, Saihan- and Jining-like in turn), the party-link system over all of them and {} city platforms: {} sources. The registry holds {} divisions and grids.\n\n",
        written.districts.len(),
        written.grids,
        platform_cities().len(),
        sources,
        registry
    ));
    out.push_str("| | 5-source demo | region |\n|---|---:|---:|\n");
    let row = |name: &str, a: String, b: String| format!("| {name} | {a} | {b} |\n");
    out.push_str(&row(
        "sources",
        demo.sources.to_string(),
        region.sources.to_string(),
    ));
    out.push_str(&row(
        "sources down at idle",
        demo.down_at_idle.to_string(),
        region.down_at_idle.to_string(),
    ));
    out.push_str(&row(
        "start → every source up, stored registry",
        ms(demo.start_all_up),
        ms(region.start_all_up),
    ));
    out.push_str(&row(
        "registry size",
        demo.registry.to_string(),
        region.registry.to_string(),
    ));
    out.push_str(&row(
        "RSS idle",
        mib(demo.rss_idle_kib),
        mib(region.rss_idle_kib),
    ));
    out.push_str(&row(
        "RSS peak (this process)",
        mib(demo.rss_peak_kib),
        mib(region.rss_peak_kib.max(peak_after_load)),
    ));
    out.push_str(&row(
        "threads idle",
        demo.threads.to_string(),
        region.threads.to_string(),
    ));
    out.push_str(&row(
        "first page of 50 (city / region): rows read, sources asked",
        format!("{} rows, {}", demo.page_rows_read, demo.page_sources_asked),
        format!(
            "{} rows, {}",
            region.page_rows_read, region.page_sources_asked
        ),
    ));
    out.push_str(&row(
        "its cursor",
        format!("{} B", demo.cursor_bytes),
        format!("{} B", region.cursor_bytes),
    ));
    out.push_str(&row(
        "page p50 at 1 client, distinct (another division and limit each)",
        ms(demo.distinct_p50),
        ms(region.distinct_p50),
    ));
    out.push_str(&row(
        "page p50 at 1 client, the same first page (cached, coalesced)",
        ms(demo.page_p50),
        ms(region.page_p50),
    ));
    let per_s = |w: (usize, Duration, usize)| w.0 as f64 / w.1.as_secs_f64();
    out.push_str(&row(
        "walk every grid by cursor (500 a page)",
        format!(
            "{} grids, {} pages, {:.1} s: {:.0}/s",
            demo.walk.0,
            demo.walk.2,
            demo.walk.1.as_secs_f64(),
            per_s(demo.walk)
        ),
        format!(
            "{} grids, {} pages, {:.1} s: {:.0}/s",
            region.walk.0,
            region.walk.2,
            region.walk.1.as_secs_f64(),
            per_s(region.walk)
        ),
    ));
    out.push_str(&format!(
        "\nBefore (the issue, 105 sources): region page p50 {BEFORE_PAGE_P50_MS} ms; walk {:.0} grids/s (72,176 in 30 s). Now: page p50 {} ({:.1}× faster, distinct), walk {:.0} grids/s ({:.1}×).\n",
        BEFORE_WALK_GRIDS_PER_S,
        ms(region.distinct_p50),
        BEFORE_PAGE_P50_MS / (region.distinct_p50.as_secs_f64() * 1000.0),
        per_s(region.walk),
        per_s(region.walk) / BEFORE_WALK_GRIDS_PER_S
    ));
    out.push_str(&format!(
        "First start (empty registry store): every source up in {}, registry of {registry} complete in {}, peak RSS {}. Second start: the stored registry loaded in {}.\n\n",
        ms(first_up),
        ms(registry_took),
        mib(first_peak),
        ms(stored_registry_loaded)
    ));
    for (how, (answers, partial, rate, alone_p99, with_p99)) in loads {
        out.push_str(&format!(
            "**Under load** (20 s): 16 region clients (region and city pages with cursors, region and city statistics) made {answers} answers, {rate:.0}/s, **{partial} partial**; 2 district users beside them ({how}): p99 {} alone, {} with the region load ({:.2}×).\n\n",
            ms(alone_p99),
            ms(with_p99),
            with_p99.as_secs_f64() / alone_p99.as_secs_f64().max(1e-9)
        ));
    }
    out.push_str(&format!(
        "**One district answering in 10 s** (`request_deadline_ms` = {deadline_ms}):\n\n| request | status | took | | |\n|---|---|---:|---|---|\n{}\n\n",
        slow_rows.join("\n")
    ));
    out.push_str(&format!(
        "**300 sources** ({} small districts, party-link, {} platforms): every source up in {} on the first start, {} with the stored registry ({} divisions); {} down at idle; RSS idle {}.\n",
        stress.0 - 1 - platform_cities().len(),
        platform_cities().len(),
        ms(stress.1),
        ms(stress.2),
        stress.5,
        stress.3,
        mib(stress.4)
    ));
    Ok(out)
}

/// A demo simulator (the demo's world), release build, on CPU 1.
async fn demo_sim(kind: &str) -> anyhow::Result<(Procs, SocketAddr)> {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut args = vec![kind.to_string(), "--listen".into(), addr.clone()];
    if kind == "city-platform" {
        args.extend(["--rate-limit", "1000000", "--token-ttl-secs", "86400"].map(String::from));
    }
    let child = sim(&args)?;
    listening(&addr).await?;
    Ok((Procs(vec![child]), addr.parse()?))
}
