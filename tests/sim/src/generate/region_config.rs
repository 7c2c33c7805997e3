//! Write a generated region to disk: every district's database and a
//! gateway configuration that serves them all (`lianqiao-sim region`).
//!
//! ```text
//! <out>/data/<code>.sqlite          one database per district
//! <out>/config/lianqiao.toml        the demo's, paths rewritten
//! <out>/config/{fields,cases}.toml, policy/   copied from the demo
//! <out>/config/sources/templates/district-{huimin,saihan,jining}.toml
//!                                   one mapping per schema, derived from
//!                                   the demo's source files
//! <out>/config/sources/<name>.toml  a few lines per district
//! <out>/config/sources/party-link.toml, city-<code>.toml
//! <out>/secrets/                    the simulators' demo credentials
//! ```
//!
//! Districts in a server database (`postgres`, `mysql`): each one's tables
//! in a schema (PostgreSQL) or database (MariaDB) of its own, `d<code>`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::region::{self, CITIES, RegionDistrict, Scale, Style};

/// The folder of templates under a sources directory (as the gateway reads it).
pub const TEMPLATES: &str = "templates";
use super::{connect_any, district_with_people, fresh_sqlite_url};

/// Where the region's upstreams listen.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// The party-link simulator (`host:port`).
    pub party_link: String,
    /// A city platform simulator per city that runs one (city code, `host:port`).
    pub city_platforms: Vec<(String, String)>,
}

/// What to write.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    /// The demo's `config/` (mappings, policy, fields are taken from it).
    pub demo_config: PathBuf,
    /// Where the built plugins are (`target/plugins`).
    pub plugins: PathBuf,
    pub count: usize,
    pub scale: Scale,
    pub seed: u64,
    /// Every n-th Saihan-style district goes to this PostgreSQL server.
    pub postgres: Option<(String, usize)>,
    /// Every n-th Jining-style district goes to this MariaDB server.
    pub mysql: Option<(String, usize)>,
    pub upstreams: Upstreams,
    /// Where the gateway listens (plain HTTP) and its admin listener.
    pub listen: String,
    pub metrics_listen: String,
    /// Keep a district's SQLite file from an earlier run with the same
    /// seed and scale (benchmarks: a full region takes a minute to write).
    pub reuse_data: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub config: PathBuf,
    /// (source name, city code, district code, database URL) per district.
    pub districts: Vec<(String, String, String, String)>,
    pub grids: usize,
}

/// The name of the source of a generated district.
pub fn source_name(code: &str) -> String {
    format!("district-{code}")
}

/// Cities that run a platform of their own in the generated region.
pub fn platform_cities() -> Vec<&'static str> {
    CITIES
        .iter()
        .filter(|(_, _, platform)| *platform)
        .map(|(c, _, _)| *c)
        .collect()
}

/// Write the region: data, configuration, sources.
pub async fn write(o: &Options) -> anyhow::Result<Written> {
    let config = o.out.join("config");
    let sources = config.join("sources");
    std::fs::create_dir_all(&sources).with_context(|| sources.display().to_string())?;
    // Stale source files of an earlier, larger region must not linger.
    for entry in std::fs::read_dir(&sources)?.flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "toml") {
            std::fs::remove_file(&p)?;
        }
    }
    copy_demo(&o.demo_config, &config)?;
    main_file(o, &config)?;
    let mut written = write_sources(o, &sources).await?;
    written.config = config.join("lianqiao.toml");
    Ok(written)
}

/// Write the region's databases (under `<out>/data`), its templates and
/// source files into `sources` (an existing configuration's sources
/// directory: the tests' own), and the simulators' credentials.
pub async fn write_sources(o: &Options, sources: &Path) -> anyhow::Result<Written> {
    let data = o.out.join("data");
    let templates = sources.join(TEMPLATES);
    let secrets = o.out.join("secrets");
    for dir in [&data, &templates, &secrets] {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    for style in [Style::Huimin, Style::Saihan, Style::Jining] {
        template(o, style, &templates)?;
    }
    std::fs::write(secrets.join("party-link"), "demo-secret\n")?;
    upstream_sources(o, sources, &secrets)?;

    let mut written = Written {
        config: sources.to_path_buf(),
        districts: Vec::new(),
        grids: 0,
    };
    let mut saihan_seen = 0usize;
    let mut jining_seen = 0usize;
    for d in region::districts(o.count, o.scale) {
        let code = d.plan.code;
        let server = match d.style {
            Style::Saihan => {
                saihan_seen += 1;
                o.postgres
                    .as_ref()
                    .filter(|(_, every)| saihan_seen.is_multiple_of(*every.max(&1)))
                    .map(|(url, _)| url.clone())
            }
            Style::Jining => {
                jining_seen += 1;
                o.mysql
                    .as_ref()
                    .filter(|(_, every)| jining_seen.is_multiple_of(*every.max(&1)))
                    .map(|(url, _)| url.clone())
            }
            Style::Huimin => None,
        };
        let generate = || {
            let (district, people) = district_with_people(&d.plan, o.seed);
            (district, people)
        };
        let url = match server {
            Some(url) => {
                let (district, people) = generate();
                written.grids += district.grids.len();
                let url = own_database(&url, &format!("d{code}")).await?;
                let mut conn = connect_any(&url).await?;
                match d.style {
                    Style::Saihan => {
                        super::schema_saihan::write(&mut conn, &district, &people).await?
                    }
                    _ => super::schema_jining::write(&mut conn, &district, &people).await?,
                }
                url
            }
            None => {
                let path = data.join(format!("{code}.sqlite"));
                // The schemas' version is in the name: a changed schema is written anew.
                let done = data.join(format!("{code}.{}-{:?}.v2.done", o.seed, o.scale));
                if o.reuse_data && done.exists() && path.exists() {
                    district_source(&d, &format!("sqlite://{}", path.display()), sources)?;
                    written.districts.push((
                        source_name(code),
                        d.city.to_string(),
                        code.to_string(),
                        format!("sqlite://{}", path.display()),
                    ));
                    written.grids += std::fs::read_to_string(&done)?.trim().parse::<usize>()?;
                    continue;
                }
                let (district, people) = generate();
                written.grids += district.grids.len();
                match d.style {
                    Style::Huimin => super::sqlite_huimin::write(&district, &people, &path).await?,
                    Style::Saihan => {
                        let mut conn = connect_any(&fresh_sqlite_url(&path)?).await?;
                        super::schema_saihan::write(&mut conn, &district, &people).await?
                    }
                    Style::Jining => {
                        let mut conn = connect_any(&fresh_sqlite_url(&path)?).await?;
                        super::schema_jining::write(&mut conn, &district, &people).await?
                    }
                }
                std::fs::write(&done, district.grids.len().to_string())?;
                format!("sqlite://{}", path.display())
            }
        };
        district_source(&d, &url, sources)?;
        written
            .districts
            .push((source_name(code), d.city.to_string(), code.to_string(), url));
    }
    Ok(written)
}

/// A schema (PostgreSQL) or database (MariaDB) of its own for one
/// district on the server at `url`, emptied; its URL.
async fn own_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut admin = connect_any(url).await?;
    use sqlx::Executor;
    if url.starts_with("postgres") {
        for s in [
            format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
            format!("CREATE SCHEMA {name}"),
        ] {
            admin.execute(sqlx::AssertSqlSafe(s)).await?;
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        Ok(format!("{url}{sep}options=-c%20search_path%3D{name}"))
    } else {
        for s in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.execute(sqlx::AssertSqlSafe(s)).await?;
        }
        let base = url.rsplit_once('/').map_or(url, |(b, _)| b);
        Ok(format!("{base}/{name}"))
    }
}

/// The demo's policy, fields and case table, as they are.
fn copy_demo(demo: &Path, config: &Path) -> anyhow::Result<()> {
    for file in ["fields.toml", "cases.toml"] {
        std::fs::copy(demo.join(file), config.join(file)).with_context(|| file.to_string())?;
    }
    let policy = config.join("policy");
    copy_dir(&demo.join("policy"), &policy)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The demo's main file with the region's listeners, no TLS (the region
/// is for load and scale, on loopback), and paths that point back to the
/// demo's keys and the shared plugin cache.
fn main_file(o: &Options, config: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(o.demo_config.join("lianqiao.toml"))?;
    let mut main: toml::Table = toml::from_str(&text)?;
    let demo_target = absolute(&o.demo_config.join("../target"))?;
    let at = |rel: &str| demo_target.join(rel).display().to_string();
    if let Some(server) = main.get_mut("server").and_then(|s| s.as_table_mut()) {
        server.remove("tls");
        server.remove("plaintext_listen");
        server.insert("listen".into(), o.listen.clone().into());
        server.insert("plaintext".into(), true.into());
    }
    if let Some(plugins) = main.get_mut("plugins").and_then(|s| s.as_table_mut()) {
        plugins.insert("cache_dir".into(), at("plugin-cache").into());
    }
    if let Some(t) = main.get_mut("telemetry").and_then(|s| s.as_table_mut()) {
        t.insert("metrics_listen".into(), o.metrics_listen.clone().into());
        t.insert("access_log".into(), false.into());
    }
    if let Some(issuers) = main
        .get_mut("auth")
        .and_then(|a| a.get_mut("issuers"))
        .and_then(|i| i.as_array_mut())
    {
        for issuer in issuers.iter_mut().filter_map(|i| i.as_table_mut()) {
            issuer.insert(
                "public_key_file".into(),
                at("demo/keys/issuer.pub.pem").into(),
            );
        }
    }
    if let Some(audit) = main.get_mut("audit").and_then(|s| s.as_table_mut()) {
        let db = absolute(&o.out)?.join("audit.db");
        audit.insert("url".into(), format!("sqlite://{}", db.display()).into());
        audit.insert("chain".into(), "region".into());
    }
    let header = "# The generated region (lianqiao-sim region): the demo's configuration\n# with one source per district; see docs/region.md.\n\n";
    std::fs::write(
        config.join("lianqiao.toml"),
        format!("{header}{}", toml::to_string_pretty(&main)?),
    )?;
    Ok(())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(p).ok();
    std::fs::canonicalize(p).with_context(|| p.display().to_string())
}

/// One schema's mapping, derived from the demo's source file of that
/// schema: everything but what names one district (name, description,
/// coverage, its database).
fn template(o: &Options, style: Style, templates: &Path) -> anyhow::Result<()> {
    let file = o
        .demo_config
        .join("sources")
        .join(format!("{}.toml", style.as_str()));
    let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
    let mut t: toml::Table = toml::from_str(&text)?;
    for key in ["name", "description", "coverage"] {
        t.remove(key);
    }
    if let Some(sql) = t.get_mut("sql").and_then(|s| s.as_table_mut()) {
        sql.remove("url");
        // A region's pools are small: a connection per call in flight.
        sql.insert("max_connections".into(), 2i64.into());
    }
    if let Some(plugin) = t.get_mut("plugin").and_then(|s| s.as_table_mut()) {
        let wasm = absolute(&o.plugins)?.join("district_sql.wasm");
        plugin.insert("path".into(), wasm.display().to_string().into());
    }
    let header = format!(
        "# The `{}` schema's mapping for every district that has it, derived from\n# the demo's config/sources/{}.toml (lianqiao-sim region).\n\n",
        style.as_str(),
        style.as_str()
    );
    std::fs::write(
        templates.join(format!("district-{}.toml", style.as_str())),
        format!("{header}{}", toml::to_string_pretty(&t)?),
    )?;
    Ok(())
}

/// A district's own file: what is not its schema's.
fn district_source(d: &RegionDistrict, url: &str, sources: &Path) -> anyhow::Result<()> {
    let code = d.plan.code;
    let text = format!(
        "name = {name:?}\ndescription = {desc:?}\ntemplate = \"district-{style}\"\ncoverage = [{code:?}]\n\n[sql]\nurl = {url:?}\n",
        name = source_name(code),
        desc = format!("{} ({})", d.plan.name, d.style.as_str()),
        style = d.style.as_str(),
    );
    std::fs::write(sources.join(format!("{}.toml", source_name(code))), text)?;
    Ok(())
}

/// The party-link system over the whole region, and a platform per city
/// that runs one (each with its own OAuth client).
fn upstream_sources(o: &Options, sources: &Path, secrets: &Path) -> anyhow::Result<()> {
    let plugins = absolute(&o.plugins)?;
    let secrets = absolute(secrets)?;
    let pl = &o.upstreams.party_link;
    let party_link = format!(
        "name = \"party-link\"\ndescription = \"自治区党群连心桥系统 (simulated, the whole region)\"\ncoverage = [\"15\"]\n\n[plugin]\npath = {wasm:?}\n\n[limits]\nmemory_mib = 128\ndeadline_ms = 8000\nmax_rows = 5000\n\n[http]\nallow = [\"http://{pl}/api/v1/\"]\ntimeout_ms = 3000\n\n[http.credentials.party-link]\nkind = \"hmac-sha256\"\napp_key = \"demo\"\nsecret_file = {secret:?}\n\n[cache]\nmax_mib = 64\n\n[plugin.settings]\nbase_url = \"http://{pl}\"\ncredential = \"party-link\"\nsnapshot_ttl_ms = 60000\n",
        wasm = plugins.join("party_link.wasm").display().to_string(),
        secret = secrets.join("party-link").display().to_string(),
    );
    std::fs::write(sources.join("party-link.toml"), party_link)?;
    for (city, addr) in &o.upstreams.city_platforms {
        let name = CITIES
            .iter()
            .find(|(c, _, _)| c == city)
            .map_or("", |(_, n, _)| *n);
        let secret = secrets.join(format!("city-{city}"));
        std::fs::write(&secret, "demo-secret\n")?;
        let text = format!(
            "name = \"city-{city}\"\ndescription = \"{name}一体化信息平台 (simulated)\"\ncoverage = [\"{prefix}\"]\n\n[plugin]\npath = {wasm:?}\n\n[limits]\nmemory_mib = 64\ndeadline_ms = 8000\n\n[http]\nallow = [\"http://{addr}/divisions\", \"http://{addr}/cases\", \"http://{addr}/service-centers\"]\ntimeout_ms = 3000\n\n[http.credentials.city-platform]\nkind = \"oauth2-client-credentials\"\ntoken_url = \"http://{addr}/oauth/token\"\nclient_id = \"city-{city}\"\nsecret_file = {secret:?}\n\n[cache]\nmax_mib = 16\n\n[plugin.settings]\nbase_url = \"http://{addr}\"\ncredential = \"city-platform\"\nsnapshot_ttl_ms = 300000\n",
            prefix = &city[..4],
            wasm = plugins.join("city_platform.wasm").display().to_string(),
            secret = secret.display().to_string(),
        );
        std::fs::write(sources.join(format!("city-{city}.toml")), text)?;
    }
    Ok(())
}
