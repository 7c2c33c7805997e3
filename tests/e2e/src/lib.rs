//! Shared fixtures for Lianqiao's end-to-end tests and benchmarks: real
//! district databases, the real plugins, a real gateway on a loopback port
//! and a real HTTP client. Nothing here is a mock.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lianqiao_gateway::config::{self, ConfigErrors};
use lianqiao_gateway::server::{Gateway, Live, serve};
use lianqiao_sim::generate::{
    self as sim, DEFAULT_SEED, District, People, plans, schema_jining, schema_saihan, sqlite_huimin,
};
use tokio::sync::oneshot;

pub mod oracle;

/// The workspace root (tests/e2e/../..).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where `cargo xtask plugins` put the plugin components.
pub fn plugin_dir() -> PathBuf {
    let dir = std::env::var_os("LIANQIAO_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/plugins"));
    assert!(
        dir.join("district_sql.wasm").is_file(),
        "no plugins in {}: run the tests with `cargo xtask test` (or build them with `cargo xtask plugins`)",
        dir.display()
    );
    dir
}

/// The Huimin district as generated with the default seed, and its SQLite
/// file, written once per test process.
pub fn huimin() -> &'static (District, PathBuf) {
    static HUIMIN: OnceLock<(District, PathBuf)> = OnceLock::new();
    HUIMIN.get_or_init(|| {
        let (district, people) = sim::district_with_people(&plans::HUIMIN, DEFAULT_SEED);
        let dir = workspace_root().join("target/e2e-data");
        let path = dir.join(format!("huimin-{}.sqlite", std::process::id()));
        let (d, p) = (district.clone(), path.clone());
        block_on_fresh(async move { sqlite_huimin::write(&d, &people, &p).await });
        (district, path)
    })
}

/// An ordinary (14-digit) grid of Huimin: where a grid worker's case
/// writes go in the tests.
pub fn huimin_grid() -> String {
    huimin()
        .0
        .grids
        .iter()
        .find(|g| g.code.len() == 14)
        .expect("Huimin has ordinary grids")
        .code
        .clone()
}

/// Up to 100 records of the audit trail at `url`, in its default order.
pub async fn audit_records(url: &str) -> Vec<lianqiao_gateway::audit::Stored> {
    let store = lianqiao_gateway::audit::AuditStore::open(url)
        .await
        .expect("audit store");
    store
        .query(&lianqiao_gateway::audit::Query {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("audit query")
}

/// Run an async generator step on a runtime of its own, so any test
/// (whatever its runtime) can ask for the data.
fn block_on_fresh<F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static>(f: F) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(f).expect("generate test data");
    })
    .join()
    .expect("generator thread");
}

/// Saihan and Jining with their people, generated once per process.
pub fn saihan_and_jining() -> &'static ((District, People), (District, People)) {
    static DATA: OnceLock<((District, People), (District, People))> = OnceLock::new();
    DATA.get_or_init(|| {
        (
            sim::district_with_people(&plans::SAIHAN, DEFAULT_SEED),
            sim::district_with_people(&plans::JINING, DEFAULT_SEED),
        )
    })
}

/// SQLite copies of Saihan's and Jining's databases, written once per process.
pub fn saihan_jining_sqlite() -> &'static (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = workspace_root().join("target/e2e-data");
        let saihan = dir.join(format!("saihan-{}.sqlite", std::process::id()));
        let jining = dir.join(format!("jining-{}.sqlite", std::process::id()));
        let (s, j) = (saihan.clone(), jining.clone());
        block_on_fresh(async move {
            let ((sd, sp), (jd, jp)) = saihan_and_jining();
            let mut conn = sim::connect_any(&sim::fresh_sqlite_url(&s)?).await?;
            schema_saihan::write(&mut conn, sd, sp).await?;
            let mut conn = sim::connect_any(&sim::fresh_sqlite_url(&j)?).await?;
            schema_jining::write(&mut conn, jd, jp).await
        });
        (saihan, jining)
    })
}

/// One case of the test source with cases of every loop.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub id: String,
    pub case_loop: &'static str,
    pub division: String,
    pub reporter_name: String,
    pub reporter_phone: String,
}

/// Cases of all four loops across Huimin's grids and communities (the
/// district databases have no case tables yet; the loop restriction needs
/// every loop), in a SQLite file written once per process.
pub fn cases_of_every_loop() -> &'static (Vec<TestCase>, PathBuf) {
    static CASES: OnceLock<(Vec<TestCase>, PathBuf)> = OnceLock::new();
    CASES.get_or_init(|| {
        const LOOPS: [&str; 4] = ["grid", "community", "street", "city"];
        const SURNAMES: [&str; 8] = ["王", "李", "张", "刘", "陈", "杨", "赵", "呼和"];
        const GIVEN: [&str; 6] = ["建国", "秀英", "志强", "丽", "巴特尔", "海燕"];
        let (district, _) = huimin();
        let mut cases = Vec::new();
        for (i, grid) in district.grids.iter().filter(|g| g.code.len() == 14).take(120).enumerate() {
            for k in 0..3 {
                let n = i * 3 + k;
                let case_loop = LOOPS[n % 4];
                // Grid and community cases sit in the grid; street and city
                // cases at the community.
                let division = match case_loop {
                    "grid" | "community" => grid.code.clone(),
                    _ => grid.community.clone(),
                };
                cases.push(TestCase {
                    id: format!("HM-CASE-{n:05}"),
                    case_loop,
                    division,
                    reporter_name: format!("{}{}", SURNAMES[n % 8], GIVEN[(n / 8) % 6]),
                    reporter_phone: format!("139{:08}", 47_000_000 + n * 7919 % 1_000_000),
                });
            }
        }
        let path = workspace_root()
            .join("target/e2e-data")
            .join(format!("cases-{}.sqlite", std::process::id()));
        let (rows, file) = (cases.clone(), path.clone());
        block_on_fresh(async move {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&sim::fresh_sqlite_url(&file)?).await?;
            sqlx::query(
                "CREATE TABLE cases (id TEXT PRIMARY KEY, title TEXT, category TEXT, loop TEXT, state TEXT, division TEXT, opened_at TEXT, reporter_name TEXT, reporter_phone TEXT)",
            )
            .execute(&mut conn)
            .await?;
            for (n, c) in rows.iter().enumerate() {
                sqlx::query("INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
                    .bind(&c.id)
                    .bind(format!("楼道堆物清理 {n}"))
                    .bind(["环境卫生", "邻里纠纷", "设施维修"][n % 3])
                    .bind(c.case_loop)
                    .bind(["assessed", "accepted", "feedback", "closed"][n % 4])
                    .bind(&c.division)
                    .bind(format!("2026-11-{:02}T08:00:00Z", 1 + n % 28))
                    .bind(&c.reporter_name)
                    .bind(&c.reporter_phone)
                    .execute(&mut conn)
                    .await?;
            }
            Ok(())
        });
        (cases, path)
    })
}

/// `sqlite://<path>`.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Walk every page of the list `query` (a `/v1/...` path with its query
/// string): the rows in order, each (source, id) once, no page partial.
pub async fn walk_pages(gw: &TestGateway, query: &str) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut path = query.to_string();
    for _ in 0..200 {
        let (status, body) = gw.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["partial"], false, "{body}");
        for row in body["data"].as_array().expect("data") {
            let key = (row["source"].to_string(), row["id"].to_string());
            assert!(seen.insert(key.clone()), "{key:?} twice");
            rows.push(row.clone());
        }
        match body["page"]["next_cursor"].as_str() {
            Some(c) => path = format!("{query}&cursor={c}"),
            None => return rows,
        }
    }
    panic!("{query}: more than 200 pages");
}

/// The URL in `var`, or `None` after saying loudly that the test is skipped.
pub fn database_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "\n*** SKIPPED {test}: {var} is not set. `.ci/run` sets it; locally export it \
                 (e.g. {var}=postgres://postgres@127.0.0.1:5432/test) to run this test. ***\n"
            );
            None
        }
    }
}

/// A database of its own on the server at `url` (the `test` database's
/// server), dropped and made again: the catalog then holds only the new
/// district's tables. Its URL.
pub async fn fresh_database(url: &str, name: &str) -> String {
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(url).await.expect("connect");
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&admin)
            .await
            .expect("make the database");
    }
    admin.close().await;
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    format!("{base}/{name}")
}

/// Write Saihan into PostgreSQL at `url` (tables replaced).
pub async fn saihan_into(url: &str) -> anyhow::Result<()> {
    let ((d, p), _) = saihan_and_jining();
    let mut conn = sim::connect_any(url).await?;
    schema_saihan::write(&mut conn, d, p).await
}

/// Write Jining into MariaDB at `url` (tables replaced).
pub async fn jining_into(url: &str) -> anyhow::Result<()> {
    let (_, (d, p)) = saihan_and_jining();
    let mut conn = sim::connect_any(url).await?;
    schema_jining::write(&mut conn, d, p).await
}

/// The party-link and city-platform simulators on loopback ports, with
/// fault injection handles; one pair per test that asks.
pub struct Upstreams {
    pub party_link: std::net::SocketAddr,
    pub city_platform: std::net::SocketAddr,
    pub party_link_faults: lianqiao_sim::upstream::faults::Faults,
    pub city_faults: lianqiao_sim::upstream::faults::Faults,
}

/// The simulators' world, generated once per process.
pub fn world() -> Arc<lianqiao_sim::upstream::world::World> {
    static WORLD: OnceLock<Arc<lianqiao_sim::upstream::world::World>> = OnceLock::new();
    WORLD
        .get_or_init(|| Arc::new(lianqiao_sim::upstream::world::World::generate(DEFAULT_SEED)))
        .clone()
}

impl Upstreams {
    pub async fn start() -> Upstreams {
        use lianqiao_sim::upstream::{city_platform, faults::Faults, party_link, serve};
        let creds =
            std::collections::HashMap::from([("demo".to_string(), "demo-secret".to_string())]);
        let party_link_faults = Faults::new(1);
        let city_faults = Faults::new(2);
        let (party_link, _) = serve(
            party_link::router(world(), creds.clone(), party_link_faults.clone()),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("party-link simulator");
        let settings = city_platform::Settings {
            clients: creds,
            token_ttl: std::time::Duration::from_secs(300),
            rate_limit: 10_000,
        };
        let (city_platform, _) = serve(
            city_platform::router(world(), settings, city_faults.clone()),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("city platform simulator");
        Upstreams {
            party_link,
            city_platform,
            party_link_faults,
            city_faults,
        }
    }
}

/// The generated region's simulators on loopback: the party-link system
/// over its first `count` districts, and a city platform for each city
/// that runs one (OAuth client `city-<code>`).
pub struct RegionUpstreams {
    pub party_link: std::net::SocketAddr,
    pub city_platforms: Vec<(String, std::net::SocketAddr)>,
    pub party_link_faults: lianqiao_sim::upstream::faults::Faults,
}

impl RegionUpstreams {
    pub async fn start(count: usize) -> RegionUpstreams {
        use lianqiao_sim::generate::region::Scale;
        use lianqiao_sim::generate::region_config::platform_cities;
        use lianqiao_sim::upstream::{
            city_platform, faults::Faults, party_link, serve, world::World,
        };
        let small = Scale::Small;
        let apps =
            std::collections::HashMap::from([("demo".to_string(), "demo-secret".to_string())]);
        let party_link_faults = Faults::new(3);
        let world = Arc::new(World::region(DEFAULT_SEED, count, small, None));
        let (party_link, _) = serve(
            party_link::router(world, apps, party_link_faults.clone()),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
        .expect("party-link simulator");
        let mut city_platforms = Vec::new();
        for city in platform_cities() {
            let world = Arc::new(World::region(DEFAULT_SEED, count, small, Some(city)));
            let settings = city_platform::Settings {
                clients: std::collections::HashMap::from([(
                    format!("city-{city}"),
                    "demo-secret".to_string(),
                )]),
                token_ttl: std::time::Duration::from_secs(300),
                rate_limit: 10_000,
            };
            let (addr, _) = serve(
                city_platform::router(world, settings, Faults::new(4)),
                "127.0.0.1:0".parse().expect("addr"),
            )
            .await
            .expect("city platform simulator");
            city_platforms.push((city.to_string(), addr));
        }
        RegionUpstreams {
            party_link,
            city_platforms,
            party_link_faults,
        }
    }
}

/// A gateway over Huimin's database and both simulators (members are the
/// party-link's joined with Huimin's), with the simulators it needs.
pub async fn huimin_with_members() -> (TestGateway, Upstreams) {
    let up = Upstreams::start().await;
    let gw = ConfigDir::new()
        .with_huimin()
        .with_upstreams(&up)
        .start()
        .await;
    (gw, up)
}

/// The tests' token issuer.
pub const TEST_ISSUER: &str = "lianqiao-test";
/// An API key the test config accepts (a city-level system).
pub const TEST_API_KEY: &str = "test-system-key";

/// Lets the tests' default principal (role `e2e-all`) see everything, so
/// tests of federation see unmasked rows; policy tests use other tokens.
const E2E_POLICY: &str = "@id(\"e2e-tests-see-everything\")\npermit (principal, action, resource) when { principal.roles.contains(\"e2e-all\") };\n";

/// One Ed25519 issuer key pair per test process: (private, public) PEM.
pub fn test_issuer() -> &'static (String, String) {
    static KEYS: OnceLock<(String, String)> = OnceLock::new();
    KEYS.get_or_init(|| lianqiao_policy::authn::generate_ed25519().expect("issuer key"))
}

/// A token from the tests' issuer for a principal.
pub fn token(level: &str, division: &str, roles: &[&str]) -> String {
    token_with(level, division, roles, 3600)
}

/// A token valid for `ttl_s` seconds (negative: already expired).
pub fn token_with(level: &str, division: &str, roles: &[&str], ttl_s: i64) -> String {
    let now = lianqiao_policy::authn::now() as i64;
    lianqiao_policy::authn::issue_ed25519(
        &test_issuer().0,
        &lianqiao_policy::authn::Claims {
            sub: format!("test-{level}-{division}"),
            iss: TEST_ISSUER.into(),
            aud: "lianqiao".into(),
            exp: (now + ttl_s).max(0) as u64,
            nbf: None,
            level: level.into(),
            division: division.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        },
    )
    .expect("token")
}

/// The default principal's `Authorization` header value.
pub fn default_auth() -> &'static str {
    static AUTH: OnceLock<String> = OnceLock::new();
    AUTH.get_or_init(|| format!("Bearer {}", token("region", "15", &["e2e-all"])))
}

/// A config directory: `lianqiao.toml` and `sources/*.toml`.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl ConfigDir {
    /// The main file with defaults suited to tests, plus no sources yet.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sources")).expect("sources dir");
        let cache = workspace_root().join("target/plugin-cache");
        // The shipped field classes and policy, copied: the console's
        // change tests write them.
        let fields = dir.path().join("fields.toml");
        std::fs::copy(workspace_root().join("config/fields.toml"), &fields).expect("copy fields");
        // The shipped policy, plus one the tests' default principal uses
        // to see everything (tests of the policy itself use other tokens).
        let policy = dir.path().join("policy");
        std::fs::create_dir_all(&policy).expect("policy dir");
        for entry in
            std::fs::read_dir(workspace_root().join("config/policy")).expect("config/policy")
        {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::copy(&path, policy.join(path.file_name().expect("name")))
                    .expect("copy policy");
            }
        }
        std::fs::create_dir_all(policy.join("tests")).expect("policy tests dir");
        for entry in std::fs::read_dir(workspace_root().join("config/policy/tests"))
            .expect("config/policy/tests")
        {
            let path = entry.expect("entry").path();
            std::fs::copy(
                &path,
                policy.join("tests").join(path.file_name().expect("name")),
            )
            .expect("copy policy tests");
        }
        std::fs::write(policy.join("e2e.cedar"), E2E_POLICY).expect("e2e policy");
        std::fs::write(dir.path().join("issuer.pub.pem"), &test_issuer().1).expect("issuer key");
        let main = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nplaintext = true\n\n[plugins]\npool_instances = 32\nmax_memory_mib = 128\ncache_dir = {:?}\n\n[sources]\ndir = \"sources\"\n\n[model]\nfields = {:?}\n\n\
             [[auth.issuers]]\nissuer = \"{TEST_ISSUER}\"\naudience = \"lianqiao\"\nalgorithm = \"EdDSA\"\npublic_key_file = \"issuer.pub.pem\"\n\n\
             [[auth.api_keys]]\nid = \"test-system\"\nsha256 = \"{}\"\nlevel = \"city\"\ndivision = \"1501\"\n\n\
             [policy]\ndir = \"policy\"\n# Tests that count source calls, statements and breaker trips need a\n# quiet gateway: no registry fetch unless a test turns it on.\nregistry_refresh_s = 0\n\n[audit]\nurl = \"sqlite://audit.db\"\nchain = \"test\"\n\n\
             [statistics]\n# Tests ask many statistics as one principal; the budget test lowers it.\nburst = 1000000\nqueries_per_hour = 1000000\n\n\
             [telemetry]\n# No background health checks either, unless a test turns them on.\nhealth_interval_s = 0\n",
            cache.display().to_string(),
            fields.display().to_string(),
            lianqiao_policy::authn::sha256_hex(TEST_API_KEY),
        );
        std::fs::write(dir.path().join("lianqiao.toml"), main).expect("write config");
        ConfigDir { dir }
    }

    /// The audit store of this configuration.
    pub fn audit_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("audit.db").display())
    }

    /// Replace text in the main file.
    pub fn edit_main(self, from: &str, to: &str) -> Self {
        let path = self.main_file();
        let text = std::fs::read_to_string(&path).expect("main config");
        assert!(text.contains(from), "`{from}` is not in the test config");
        std::fs::write(&path, text.replace(from, to)).expect("main config");
        self
    }

    /// Allow `n` plugin instances at once (the default is 32).
    pub fn with_pool_instances(self, n: u32) -> Self {
        let path = self.main_file();
        let text = std::fs::read_to_string(&path).expect("main config");
        std::fs::write(
            &path,
            text.replace("pool_instances = 32", &format!("pool_instances = {n}")),
        )
        .expect("main config");
        self
    }

    /// The demo's Huimin source, pointed at this process's database.
    pub fn with_huimin(self) -> Self {
        let url = format!("sqlite://{}", huimin().1.display());
        self.with_demo_source("huimin", &url)
    }

    /// A demo source (`config/sources/<name>.toml`) reading `database_url`.
    pub fn with_demo_source(self, name: &str, database_url: &str) -> Self {
        let demo =
            std::fs::read_to_string(workspace_root().join(format!("config/sources/{name}.toml")))
                .expect("demo source config");
        let text: String = demo
            .lines()
            .map(|line| {
                if line.starts_with("path = ") {
                    format!(
                        "path = {:?}",
                        plugin_dir().join("district_sql.wasm").display().to_string()
                    )
                } else if line.starts_with("url = ") {
                    format!("url = {database_url:?}")
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        self.source(name, &text)
    }

    /// A `district-sql` source `huimin-cases` serving [`cases_of_every_loop`].
    pub fn with_cases_of_every_loop(self) -> Self {
        let (_, path) = cases_of_every_loop();
        let text = format!(
            "name = \"huimin-cases\"\ncoverage = [\"150103\"]\n\n[plugin]\npath = {:?}\n\n[limits]\nmemory_mib = 32\ndeadline_ms = 2000\nmax_rows = 5000\n\n[sql]\nurl = \"sqlite://{}\"\nmax_connections = 2\n\n[plugin.settings.entities.cases]\nsql = \"SELECT id, title, category, loop, state, division, opened_at, reporter_name, reporter_phone FROM cases\"\nfields = {{ id = \"text\", title = \"text\", category = \"text\", loop = \"text\", state = \"text\", division = \"text\", opened_at = \"timestamp\", reporter_name = \"text\", reporter_phone = \"text\" }}\n",
            plugin_dir().join("district_sql.wasm").display().to_string(),
            path.display()
        );
        self.source("huimin-cases", &text)
    }

    /// The demo's party-link and city-platform sources, pointed at `up`;
    /// their secrets in files of this directory.
    pub fn with_upstreams(self, up: &Upstreams) -> Self {
        self.with_upstream_addrs(up.party_link, up.city_platform)
    }

    /// `with_upstreams` for simulators listening at these addresses.
    pub fn with_upstream_addrs(
        self,
        party_link: std::net::SocketAddr,
        city_platform: std::net::SocketAddr,
    ) -> Self {
        let secret = self.dir.path().join("secret");
        std::fs::write(&secret, "demo-secret").expect("secret file");
        let secret = secret.display().to_string();
        let mut me = self;
        for name in ["party-link", "city-platform"] {
            let demo = std::fs::read_to_string(
                workspace_root().join(format!("config/sources/{name}.toml")),
            )
            .expect("demo source config");
            let wasm = plugin_dir().join(format!("{}.wasm", name.replace('-', "_")));
            let text = demo
                .replace(
                    &format!("../../target/plugins/{}.wasm", name.replace('-', "_")),
                    &wasm.display().to_string(),
                )
                .replace(&format!("../../target/demo/secrets/{name}"), &secret)
                .replace("http://127.0.0.1:8091", &format!("http://{}", party_link))
                .replace(
                    "http://127.0.0.1:8092",
                    &format!("http://{}", city_platform),
                );
            me = me.source(name, &text);
        }
        me
    }

    /// The generated region's first `count` districts (small: a few grids
    /// each) as sources of this configuration, with the party-link system
    /// and the city platforms of `up`. What was written.
    pub async fn with_region(
        self,
        up: &RegionUpstreams,
        count: usize,
    ) -> (Self, lianqiao_sim::generate::region_config::Written) {
        let upstreams = lianqiao_sim::generate::region_config::Upstreams {
            party_link: up.party_link.to_string(),
            city_platforms: up
                .city_platforms
                .iter()
                .map(|(c, a)| (c.clone(), a.to_string()))
                .collect(),
        };
        let out = self.dir.path().join("region");
        let scale = lianqiao_sim::generate::region::Scale::Small;
        self.with_region_at(upstreams, count, scale, out, false, None, None)
            .await
    }

    /// The same with the region's upstreams at `upstreams`, its data in
    /// `out` (kept there, and reused when `reuse_data`), at `scale`; every
    /// n-th Saihan-style district in a PostgreSQL schema of its own and
    /// every n-th Jining-style one in a MariaDB database when given.
    #[allow(clippy::too_many_arguments)]
    pub async fn with_region_at(
        self,
        upstreams: lianqiao_sim::generate::region_config::Upstreams,
        count: usize,
        scale: lianqiao_sim::generate::region::Scale,
        out: std::path::PathBuf,
        reuse_data: bool,
        postgres: Option<(String, usize)>,
        mysql: Option<(String, usize)>,
    ) -> (Self, lianqiao_sim::generate::region_config::Written) {
        use lianqiao_sim::generate::region_config as rc;
        let options = rc::Options {
            out,
            demo_config: workspace_root().join("config"),
            plugins: plugin_dir(),
            count,
            scale,
            seed: DEFAULT_SEED,
            postgres,
            mysql,
            upstreams,
            listen: String::new(),
            metrics_listen: String::new(),
            reuse_data,
        };
        let written = rc::write_sources(&options, &self.dir.path().join("sources"))
            .await
            .expect("write the region");
        (self, written)
    }

    /// A source running the `misbehave` plugin in `mode`, covering `code`.
    pub fn with_misbehaving(self, name: &str, mode: &str, code: &str, extra: &str) -> Self {
        let text = format!(
            "name = \"{name}\"\ncoverage = [\"{code}\"]\n\n[plugin]\npath = {:?}\n\n[limits]\nmemory_mib = 16\ndeadline_ms = 300\n{extra}\n[plugin.settings]\nmode = \"{mode}\"\n",
            plugin_dir().join("misbehave.wasm").display().to_string()
        );
        self.source(name, &text)
    }

    /// Replace text in the file of source `name`.
    pub fn edit_source(self, name: &str, from: &str, to: &str) -> Self {
        let path = self.dir.path().join("sources").join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path).expect("source config");
        assert!(text.contains(from), "`{from}` is not in source {name}");
        std::fs::write(&path, text.replace(from, to)).expect("source config");
        self
    }

    pub fn source(self, name: &str, text: &str) -> Self {
        std::fs::write(
            self.dir.path().join("sources").join(format!("{name}.toml")),
            text,
        )
        .expect("write source");
        self
    }

    pub fn main_file(&self) -> PathBuf {
        self.dir.path().join("lianqiao.toml")
    }

    pub async fn build(&self) -> Result<Gateway, ConfigErrors> {
        let config = config::load(&self.main_file())?;
        Gateway::build(config).await
    }

    /// Serve HTTPS with a fresh CA's certificate (written into this
    /// directory: `tls/ca.pem`, `tls/gateway.pem`, a client certificate
    /// `tls/city-platform.pem` mapped to a city principal); client
    /// certificates are verified against the CA, `require` refuses
    /// connections without one.
    pub async fn start_tls(self, require: bool) -> TlsGateway {
        let tls = self.dir.path().join("tls");
        lianqiao_gateway::tls::certs::write_demo(&tls).expect("certificates");
        let section = format!(
            "[server.tls]\ncert_file = \"tls/gateway.pem\"\nkey_file = \"tls/gateway.key\"\nclient_ca_file = \"tls/ca.pem\"\nrequire_client_cert = {require}\n\n[[server.tls.clients]]\nname = \"city-platform.lianqiao.demo\"\nid = \"city-platform-mtls\"\nlevel = \"city\"\ndivision = \"1501\"\nroles = [\"source-admin\"]\n\n"
        );
        let dir = self
            .edit_main("plaintext = true\n", "")
            .edit_main("[plugins]", &format!("{section}[plugins]"));
        let gateway = match dir.build().await {
            Ok(g) => g,
            Err(e) => panic!("the test config should load:\n{e}"),
        };
        let state = Arc::new(
            lianqiao_gateway::tls::TlsState::load(
                gateway.config.tls.clone().expect("tls configured"),
            )
            .expect("tls state"),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = admin_listener.local_addr().expect("addr");
        let live = Arc::new(Live::new(gateway, dir.main_file()));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(lianqiao_gateway::server::serve_tls(
            live.clone(),
            listener,
            state.clone(),
            None,
            Some(admin_listener),
            async {
                let _ = stopped.await;
            },
        ));
        TlsGateway {
            addr,
            admin,
            state,
            live,
            stop: Some(stop),
            dir,
        }
    }

    /// Run the real `lianqiao` binary on this configuration (API and
    /// metrics on free loopback ports) and wait until it answers.
    pub async fn spawn_binary(&self, env: &[(&str, &str)]) -> GatewayProcess {
        self.spawn_binary_at("debug", env).await
    }

    /// `spawn_binary` with the binary of `profile` (`debug` or `release`).
    pub async fn spawn_binary_at(&self, profile: &str, env: &[(&str, &str)]) -> GatewayProcess {
        self.spawn_binary_under(&[], profile, env).await
    }

    /// `spawn_binary_at` run by `wrapper` (e.g. `valgrind --tool=callgrind`):
    /// the wrapper's process is the child.
    pub async fn spawn_binary_under(
        &self,
        wrapper: &[&str],
        profile: &str,
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        let binary = workspace_root()
            .join("target")
            .join(profile)
            .join("lianqiao");
        assert!(
            binary.exists(),
            "{} is missing: `cargo test --workspace` (or `cargo build -p lianqiao-gateway`) builds it",
            binary.display()
        );
        let (port, admin) = (free_port(), free_port());
        let log_file = self.main_file().with_file_name("gateway.log");
        let log = std::fs::File::create(&log_file).expect("create the gateway's log file");
        let log_err = log.try_clone().expect("share the log file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = std::process::Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => std::process::Command::new(&binary),
        };
        let mut child = command
            .args([
                "serve",
                "--config",
                &self.main_file().display().to_string(),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                &format!("127.0.0.1:{admin}"),
            ])
            .envs(env.iter().copied())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("start the gateway");
        let began = std::time::Instant::now();
        // Under a wrapper such as valgrind, start-up is tens of times slower.
        let patience = if wrapper.is_empty() { 60 } else { 600 };
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(exit)) = child.try_wait() {
                panic!(
                    "the gateway exited ({exit}) before listening:\n{}",
                    std::fs::read_to_string(&log_file).unwrap_or_default()
                );
            }
            assert!(
                began.elapsed().as_secs() < patience,
                "the gateway did not start listening"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        GatewayProcess {
            child,
            port,
            admin,
            log_file,
        }
    }

    /// Build and serve on a loopback port; panics with the config errors.
    pub async fn start(self) -> TestGateway {
        let gateway = match self.build().await {
            Ok(g) => g,
            Err(e) => panic!("the test config should load:\n{e}"),
        };
        TestGateway::serve(gateway, Some(self)).await
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A free loopback port (bound, then released for a child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The real binary serving on 127.0.0.1:`port` (killed when dropped).
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub port: u16,
    /// The admin listener (`/metrics`).
    pub admin: u16,
    /// Where its stdout and stderr go.
    pub log_file: std::path::PathBuf,
}

impl GatewayProcess {
    /// Everything the process has printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// SIGTERM, then wait for it to exit (its graceful shutdown).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for the gateway")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway serving HTTPS on 127.0.0.1:<ephemeral>, stopped when dropped.
pub struct TlsGateway {
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`, `/admin/sources/{name}`): TLS only
    /// with `telemetry.admin_tls`.
    pub admin: SocketAddr,
    pub state: Arc<lianqiao_gateway::tls::TlsState>,
    pub live: Arc<Live>,
    stop: Option<oneshot::Sender<()>>,
    pub dir: ConfigDir,
}

impl Drop for TlsGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A gateway serving on 127.0.0.1:<ephemeral>, stopped when dropped.
pub struct TestGateway {
    /// Swap in a new configuration with `live.reload()`.
    pub live: Arc<Live>,
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`).
    pub admin: SocketAddr,
    pub gateway: Arc<Gateway>,
    client: Client<HttpConnector, Empty<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    _config: Option<ConfigDir>,
}

impl TestGateway {
    pub async fn serve(gateway: Gateway, config: Option<ConfigDir>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let admin = admin_listener.local_addr().expect("addr");
        let main_file = config
            .as_ref()
            .map(ConfigDir::main_file)
            .unwrap_or_default();
        let live = Arc::new(Live::new(gateway, main_file));
        let gateway = live.current();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(live.clone(), listener, Some(admin_listener), async {
            let _ = stopped.await;
        }));
        TestGateway {
            live,
            addr,
            admin,
            gateway,
            client: Client::builder(TokioExecutor::new()).build_http(),
            stop: Some(stop),
            _config: config,
        }
    }

    async fn fetch(
        &self,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Bytes) {
        let (status, _, body) = self.fetch_full(addr, path, headers).await;
        (status, body)
    }

    async fn fetch_full(
        &self,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, hyper::HeaderMap, Bytes) {
        let mut request = hyper::Request::get(format!("http://{addr}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Empty::new()).expect("request"))
            .await
            .expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, body)
    }

    /// GET `path` from the admin listener; status and text.
    pub async fn admin_text(&self, path: &str) -> (StatusCode, String) {
        let (status, body) = self.fetch(self.admin, path, &[]).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// GET `path`; the status and the body parsed as JSON.
    pub async fn get(&self, path: &str) -> (StatusCode, serde_json::Value) {
        self.get_with(path, &[]).await
    }

    /// GET `path` with request headers; the default principal's token and
    /// purpose unless `headers` give their own (`("authorization", "")`
    /// sends none).
    pub async fn get_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, serde_json::Value) {
        let (status, _, body) = self.get_full(path, headers).await;
        (status, body)
    }

    /// Wait (up to 60 s) until the division registry holds more than
    /// `divisions` entries (for configs with `registry_refresh_s` on).
    pub async fn wait_for_registry(&self, divisions: u64) {
        let began = std::time::Instant::now();
        loop {
            let (_, ready) = self.get("/readyz").await;
            if ready["policy"]["registry_divisions"].as_u64().unwrap_or(0) > divisions {
                // /readyz and the console's sources page say when.
                assert!(
                    ready["policy"]["registry_refreshed_at"].is_string(),
                    "{ready}"
                );
                return;
            }
            assert!(
                began.elapsed().as_secs() < 60,
                "the registry did not reach {divisions} divisions: {ready}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// GET `path` as the principal holding `token`, for `purpose`.
    pub async fn get_as(
        &self,
        token: &str,
        purpose: &str,
        path: &str,
    ) -> (StatusCode, serde_json::Value) {
        let auth = format!("Bearer {token}");
        self.get_with(path, &[("authorization", &auth), ("x-purpose", purpose)])
            .await
    }

    /// GET with the response headers too.
    pub async fn get_full(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, hyper::HeaderMap, serde_json::Value) {
        let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let mut all: Vec<(&str, &str)> = headers
            .iter()
            .copied()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if !given("authorization") && !given("x-api-key") {
            all.push(("authorization", default_auth()));
        }
        if !given("x-purpose") {
            all.push(("x-purpose", "case-handling"));
        }
        let (status, response_headers, body) = self.fetch_full(self.addr, path, &all).await;
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{path}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, response_headers, json)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// GET `url` (plain HTTP) with `headers`: the status and the body as text.
pub async fn http_get_with(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
    let (status, _, body) = http_request("GET", url, headers).await?;
    Ok((status, body))
}

/// Any method to `url` (plain HTTP, no body) with `headers`: the status,
/// the response headers and the body as text.
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, hyper::HeaderMap, String)> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder()
        .method(hyper::Method::from_bytes(method.as_bytes())?)
        .uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client.request(request.body(Empty::new())?).await?;
    let status = response.status().as_u16();
    let response_headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        response_headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Sign in to the console at `admin` (`http://host:port`) with a token:
/// the session cookie and the form token.
pub async fn console_sign_in(admin: &str, token: &str) -> (String, String) {
    let bearer = format!("Bearer {token}");
    let (status, headers, body) = http_request(
        "POST",
        &format!("{admin}/console/session"),
        &[("authorization", &bearer)],
    )
    .await
    .expect("POST");
    assert_eq!(status, 200, "{body}");
    let cookie = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string();
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let csrf = answer["csrf"].as_str().expect("a form token").to_string();
    (cookie, csrf)
}

/// A request with a body (plain HTTP): status and body.
pub async fn http_send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let client: Client<HttpConnector, http_body_util::Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder()
        .method(hyper::Method::from_bytes(method.as_bytes())?)
        .uri(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = client
        .request(request.body(http_body_util::Full::new(Bytes::from(body.to_string())))?)
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// GET `url` (plain HTTP): the body of a 2xx answer.
pub async fn http_get_text(url: &str) -> anyhow::Result<String> {
    match http_get_with(url, &[]).await? {
        (200..=299, body) => Ok(body),
        (status, body) => anyhow::bail!("{url}: {status} {body}"),
    }
}
