//! Reading and validating the config files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::{
    Config, ConfigError, ConfigErrors, CredentialSection, GatewayFile, HttpConfig, HttpSection,
    ResolvedCredential, SourceConfig, SourceFile, is_division_code,
};

/// Load `path` and every source file it points to; report all problems.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_candidate(path, None)
}

/// The sources directory `path` names (`[sources] dir`, resolved).
pub fn sources_dir(path: &Path) -> Result<PathBuf, ConfigErrors> {
    let main: GatewayFile = read_file(path).map_err(|e| ConfigErrors(vec![e]))?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(base.join(&main.sources.dir))
}

/// What a configuration is read from, for a watcher: the main file, the
/// fields file, and the sources (with its templates) and policy directories (as `[model]`,
/// `[sources]` and `[policy]` name them; the defaults beside the main file
/// when it cannot be read).
pub fn watched_paths(path: &Path) -> Vec<PathBuf> {
    let base = path.parent().unwrap_or(Path::new("."));
    match read_file::<GatewayFile>(path) {
        Ok(main) => vec![
            path.to_path_buf(),
            base.join(&main.model.fields),
            base.join(&main.sources.dir),
            base.join(&main.sources.dir)
                .join(super::template::TEMPLATES),
            base.join(&main.policy.dir),
        ],
        Err(_) => vec![
            path.to_path_buf(),
            base.join("fields.toml"),
            base.join("sources"),
            base.join("sources").join(super::template::TEMPLATES),
            base.join("policy"),
        ],
    }
}

/// `load`, with `candidate` (a source file anywhere) taken as if it were
/// in the sources directory: its relative paths resolve against that
/// directory, and it replaces the file there that declares the same
/// `name`. This is how `lianqiao source check` and `source add` validate a
/// file before it is installed, through the same checks a reload runs.
pub fn load_with_candidate(path: &Path, candidate: Option<&Path>) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let main: GatewayFile = match read_file(path) {
        Ok(main) => main,
        Err(e) => return Err(ConfigErrors(vec![e])),
    };
    let base = path.parent().unwrap_or(Path::new("."));

    let listen = main
        .server
        .listen
        .parse::<SocketAddr>()
        .map_err(|e| {
            errors.push(ConfigError::new(
                path,
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080 ({e})",
                    main.server.listen
                ),
            ))
        })
        .ok();
    let server = &main.server;
    if !(1..=10_000).contains(&server.max_page_size) {
        errors.push(ConfigError::new(
            path,
            "server.max_page_size",
            "must be from 1 to 10000",
        ));
    }
    if server.default_page_size == 0 || server.default_page_size > server.max_page_size {
        errors.push(ConfigError::new(
            path,
            "server.default_page_size",
            format!(
                "must be from 1 to server.max_page_size ({})",
                server.max_page_size
            ),
        ));
    }
    for (key, value) in [
        (
            "server.max_concurrent_requests",
            server.max_concurrent_requests as u64,
        ),
        ("server.max_connections", server.max_connections as u64),
        (
            "server.header_read_timeout_ms",
            server.header_read_timeout_ms,
        ),
        ("server.max_query_bytes", server.max_query_bytes as u64),
        ("server.max_filters", server.max_filters as u64),
        ("server.max_in_values", server.max_in_values as u64),
        ("server.fan_out_at_once", server.fan_out_at_once as u64),
        ("statistics.burst", main.statistics.burst as u64),
    ] {
        if value == 0 {
            errors.push(ConfigError::new(path, key, "must be at least 1"));
        }
    }
    if server.wide_request_nice > 19 {
        errors.push(ConfigError::new(
            path,
            "server.wide_request_nice",
            format!(
                "is {}; a nice value goes from 0 (wide requests beside narrow ones) to 19",
                server.wide_request_nice
            ),
        ));
    }
    let mut statistics = main.statistics.clone();
    if let Some(file) = &statistics.key_file {
        let file = base.join(file);
        match std::fs::read(&file) {
            Ok(key) if key.len() >= 16 => statistics.key_file = Some(file),
            Ok(_) => errors.push(ConfigError::new(
                path,
                "statistics.key_file",
                format!("{}: the key needs at least 16 bytes", file.display()),
            )),
            Err(e) => errors.push(ConfigError::new(
                path,
                "statistics.key_file",
                format!("cannot read {}: {e}", file.display()),
            )),
        }
    }
    if main.statistics.suppress_below > 1000 || main.statistics.max_noise > 100 {
        errors.push(ConfigError::new(
            path,
            "statistics",
            "suppress_below is at most 1000 and max_noise at most 100 (counts would say nothing)",
        ));
    }
    if !(1..=10_000).contains(&main.plugins.pool_instances) {
        errors.push(ConfigError::new(
            path,
            "plugins.pool_instances",
            "must be from 1 to 10000",
        ));
    }
    if !(1..=4096).contains(&main.plugins.max_memory_mib) {
        errors.push(ConfigError::new(
            path,
            "plugins.max_memory_mib",
            "must be from 1 to 4096",
        ));
    }
    if main.plugins.keep_resident_kib > main.plugins.max_memory_mib << 10 {
        errors.push(ConfigError::new(
            path,
            "plugins.keep_resident_kib",
            "must not exceed max_memory_mib (in KiB): more than an instance's memory cannot stay resident",
        ));
    }
    let mut plugins = main.plugins.clone();
    plugins.cache_dir = plugins.cache_dir.map(|d| base.join(d));

    let dir = base.join(&main.sources.dir);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect(),
        Err(e) => {
            errors.push(ConfigError::new(
                path,
                "sources.dir",
                format!("cannot read directory {}: {e}", dir.display()),
            ));
            vec![]
        }
    };
    files.sort();
    if files.is_empty() && dir.is_dir() {
        errors.push(ConfigError::new(
            path,
            "sources.dir",
            format!("{} holds no *.toml source file", dir.display()),
        ));
    }

    let mut sources: Vec<SourceConfig> = Vec::new();
    // Names of every parsed source file, valid or not, to catch duplicates.
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    let candidate = match candidate.map(|c| (c, read_source(c, &dir))) {
        None => None,
        Some((_, Err(e))) => return Err(ConfigErrors(vec![e])),
        Some((file, Ok(raw))) => Some((file, raw)),
    };
    if let Some((file, (raw, template))) = &candidate {
        names.push((raw.name.clone(), file.to_path_buf()));
        if let Some(source) = validate_source(
            file,
            &dir,
            raw.clone(),
            template.clone(),
            &main,
            &mut errors,
        ) {
            sources.push(source);
        }
    }
    let candidate_file = candidate
        .as_ref()
        .and_then(|(f, _)| std::fs::canonicalize(f).ok());
    for file in &files {
        if candidate_file.is_some() && std::fs::canonicalize(file).ok() == candidate_file {
            continue;
        }
        match read_source(file, &dir) {
            Ok((raw, _))
                if candidate
                    .as_ref()
                    .is_some_and(|(_, (c, _))| c.name == raw.name) =>
            {
                // Replaced by the candidate.
            }
            Ok((raw, template)) => {
                if let Some((_, other)) = names.iter().find(|(n, _)| *n == raw.name) {
                    errors.push(ConfigError::new(
                        file,
                        "name",
                        format!("`{}` is already used by {}", raw.name, other.display()),
                    ));
                }
                names.push((raw.name.clone(), file.clone()));
                let base = file.parent().unwrap_or(Path::new("."));
                if let Some(source) = validate_source(file, base, raw, template, &main, &mut errors)
                {
                    sources.push(source);
                }
            }
            Err(e) => errors.push(e),
        }
    }

    let fields_file = base.join(&main.model.fields);
    let field_classes = match std::fs::read_to_string(&fields_file) {
        Ok(text) => crate::model::parse_field_classes(&text).unwrap_or_else(|problems| {
            for (key, message) in problems {
                errors.push(ConfigError::new(&fields_file, key, message));
            }
            Default::default()
        }),
        Err(e) => {
            errors.push(ConfigError::new(
                path,
                "model.fields",
                format!("cannot read {}: {e}", fields_file.display()),
            ));
            Default::default()
        }
    };

    let metrics_listen = optional_address(
        path,
        "telemetry.metrics_listen",
        &main.telemetry.metrics_listen,
        "127.0.0.1:9464",
        &mut errors,
    );

    let ratio = main.telemetry.trace_sample_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        errors.push(ConfigError::new(
            path,
            "telemetry.trace_sample_ratio",
            format!("{ratio} is not a share: use a number from 0.0 (none) to 1.0 (every trace)"),
        ));
    }
    for (key, endpoint) in [
        ("telemetry.otlp_endpoint", &main.telemetry.otlp_endpoint),
        (
            "telemetry.otlp_metrics_endpoint",
            &main.telemetry.otlp_metrics_endpoint,
        ),
    ] {
        if !endpoint.is_empty() && !endpoint.starts_with("http://") {
            errors.push(ConfigError::new(
                path,
                key,
                format!(
                    "`{endpoint}`: use an http:// URL of an OTLP/HTTP receiver (a local collector), e.g. http://127.0.0.1:4318/v1/traces"
                ),
            ));
        }
    }
    let auth = load_auth(path, base, &main.auth, &mut errors);
    let policy_dir = base.join(&main.policy.dir);
    let engine = match lianqiao_policy::PolicyEngine::load(&policy_dir) {
        Ok(engine) => Some(engine),
        Err(problems) => {
            for p in problems {
                errors.push(ConfigError::new(Path::new(&p.file), "policy", p.message));
            }
            None
        }
    };
    if main.policy.purposes.is_empty() {
        errors.push(ConfigError::new(
            path,
            "policy.purposes",
            "list at least one purpose callers may declare",
        ));
    }
    let audit_url = resolve_audit_url(path, base, &main.audit, &mut errors);
    let tls = resolve_tls(path, base, &main.server, &mut errors);
    if main.telemetry.admin_tls && main.server.tls.is_none() {
        errors.push(ConfigError::new(
            path,
            "telemetry.admin_tls",
            "needs [server.tls]: the admin listener serves the API's certificate",
        ));
    }
    let plaintext_listen = optional_address(
        path,
        "server.plaintext_listen",
        &main.server.plaintext_listen,
        "127.0.0.1:8080",
        &mut errors,
    );

    match (errors.is_empty(), listen, engine) {
        (true, Some(listen), Some(engine)) => Ok(Config {
            enforcer: lianqiao_policy::Enforcer {
                engine: std::sync::Arc::new(engine),
                catalog: std::sync::Arc::new(field_classes.clone()),
            },
            statistics,
            auth: std::sync::Arc::new(auth),
            policy: main.policy,
            policy_dir,
            fields_file,
            audit: main.audit,
            audit_url,
            tls,
            plaintext_listen,
            file: path.to_path_buf(),
            listen,
            server: main.server,
            plugins,
            sources,
            field_classes,
            telemetry: main.telemetry,
            metrics_listen,
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

/// One source file's checks; `base` is the directory its relative paths
/// resolve against (its own, or the sources directory for a candidate).
fn validate_source(
    file: &Path,
    base: &Path,
    raw: SourceFile,
    template: Option<PathBuf>,
    main: &GatewayFile,
    errors: &mut Vec<ConfigError>,
) -> Option<SourceConfig> {
    let before = errors.len();
    let mut error = |key: &str, message: String| errors.push(ConfigError::new(file, key, message));

    if !super::is_source_name(&raw.name) {
        error(
            "name",
            format!("`{}` must be 1–64 of a-z, 0-9, - and _", raw.name),
        );
    }

    let plugin = base.join(&raw.plugin.path);
    if !plugin.is_file() {
        error(
            "plugin.path",
            format!(
                "no plugin file at {} (build plugins with `cargo xtask plugins`)",
                plugin.display()
            ),
        );
    }
    if let Some(sha) = &raw.plugin.sha256
        && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        error("plugin.sha256", "must be 64 hex digits".into());
    }

    if raw.coverage.is_empty() {
        error(
            "coverage",
            "name at least one division code this source holds data for".into(),
        );
    }
    for (i, code) in raw.coverage.iter().enumerate() {
        if !is_division_code(code) {
            error(
                &format!("coverage[{i}]"),
                format!(
                    "`{code}` is not a unified division code ({})",
                    lianqiao_policy::division::CONVENTION
                ),
            );
        }
    }

    for (i, entity) in raw.enrich.iter().enumerate() {
        let joinable = crate::model::entity(entity).is_some_and(|e| e.field("id_number").is_some());
        if !joinable {
            error(
                &format!("enrich[{i}]"),
                format!(
                    "`{entity}` cannot be enriched: only resources keyed by a person's `id_number` (members) can"
                ),
            );
        }
    }

    let limits = &raw.limits;
    if !(1..=main.plugins.max_memory_mib).contains(&limits.memory_mib) {
        error(
            "limits.memory_mib",
            format!(
                "must be from 1 to plugins.max_memory_mib ({})",
                main.plugins.max_memory_mib
            ),
        );
    }
    if !(1..=600_000).contains(&limits.deadline_ms) {
        error("limits.deadline_ms", "must be from 1 to 600000".into());
    }
    if limits.instances == Some(0) {
        error(
            "limits.instances",
            "must be at least 1 (leave it out to hold one per call in flight, limits.max_concurrent)".into(),
        );
    }
    if limits.max_concurrent == 0 {
        error("limits.max_concurrent", "must be at least 1".into());
    }
    if limits.max_rows == 0 {
        error("limits.max_rows", "must be at least 1".into());
    }

    let mut sql_url = None;
    let mut sql_max_connections = 0;
    let mut sql_write = None;
    if let Some(sql) = &raw.sql {
        sql_max_connections = sql.max_connections;
        if let Some(write) = &sql.write {
            if write.statements.is_empty() {
                error(
                    "sql.write.statements",
                    "declare at least one statement, or leave [sql.write] out".into(),
                );
            }
            for (name, statement) in &write.statements {
                if let Err(message) =
                    lianqiao_host::contract::check_write_statement(name, statement)
                {
                    error(&format!("sql.write.statements.{name}"), message);
                }
            }
            sql_write = Some(write.statements.clone());
        }
        if !(1..=256).contains(&sql.max_connections) {
            error("sql.max_connections", "must be from 1 to 256".into());
        }
        let url = match (&sql.url, &sql.url_env) {
            (Some(url), None) => Some(url.clone()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(url) => Some(url),
                Err(_) => {
                    error(
                        "sql.url_env",
                        format!("environment variable `{var}` is not set"),
                    );
                    None
                }
            },
            _ => {
                error("sql", "give exactly one of `url` and `url_env`".into());
                None
            }
        };
        if let Some(url) = url {
            match resolve_database_url(base, &url) {
                Ok(url) => sql_url = Some(url),
                Err(message) => error(
                    if sql.url.is_some() {
                        "sql.url"
                    } else {
                        "sql.url_env"
                    },
                    message,
                ),
            }
        }
    }

    let http = raw.http.as_ref().map(|h| resolve_http(base, h, &mut error));

    let settings_json = match serde_json::to_string(&raw.plugin.settings) {
        Ok(json) => json,
        Err(e) => {
            error(
                "plugin.settings",
                format!("cannot be handed to the plugin as JSON: {e}"),
            );
            String::new()
        }
    };

    (errors.len() == before).then(|| SourceConfig {
        file: file.to_path_buf(),
        template,
        name: raw.name,
        description: raw.description,
        plugin,
        sha256: raw.plugin.sha256,
        coverage: raw.coverage,
        enrich: raw.enrich,
        limits: raw.limits,
        sql_url,
        sql_max_connections,
        sql_write,
        settings_json,
        http,
        cache_max_bytes: usize::try_from(raw.cache.max_mib << 20).unwrap_or(usize::MAX),
        breaker: raw.breaker,
        response_ttl_ms: raw.cache.response_ttl_ms,
    })
}

/// Check `[http]` and read its secrets (from the environment or files).
fn resolve_http(base: &Path, h: &HttpSection, error: &mut impl FnMut(&str, String)) -> HttpConfig {
    for (i, prefix) in h.allow.iter().enumerate() {
        let ok = prefix.parse::<hyper::Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        });
        if !ok {
            error(
                &format!("http.allow[{i}]"),
                format!("`{prefix}` is not an http(s)://host:port/path prefix"),
            );
        }
        if prefix.starts_with("https://") && h.ca_file.is_none() {
            error(
                &format!("http.allow[{i}]"),
                format!(
                    "`{prefix}` is https: name the CA that signs its certificate in `http.ca_file`"
                ),
            );
        }
    }
    if !(1..=600_000).contains(&h.timeout_ms) {
        error("http.timeout_ms", "must be from 1 to 600000".into());
    }
    let mut credentials = Vec::new();
    for (name, c) in &h.credentials {
        let key = format!("http.credentials.{name}");
        let mut secret = |env: &Option<String>, file: &Option<PathBuf>| -> Option<String> {
            match (env, file) {
                (Some(var), None) => std::env::var(var).ok().or_else(|| {
                    error(
                        &format!("{key}.secret_env"),
                        format!("environment variable `{var}` is not set"),
                    );
                    None
                }),
                (None, Some(file)) => {
                    let path = base.join(file);
                    std::fs::read_to_string(&path)
                        .map(|s| s.trim().to_string())
                        .ok()
                        .or_else(|| {
                            error(
                                &format!("{key}.secret_file"),
                                format!("cannot read {}", path.display()),
                            );
                            None
                        })
                }
                _ => {
                    error(
                        &key,
                        "give exactly one of `secret_env` and `secret_file`".into(),
                    );
                    None
                }
            }
        };
        let resolved = match c {
            CredentialSection::HmacSha256 {
                app_key,
                secret_env,
                secret_file,
            } => secret(secret_env, secret_file).map(|secret| ResolvedCredential::Hmac {
                app_key: app_key.clone(),
                secret,
            }),
            CredentialSection::Oauth2ClientCredentials {
                token_url,
                client_id,
                secret_env,
                secret_file,
            } => secret(secret_env, secret_file).map(|secret| ResolvedCredential::OAuth2 {
                token_url: token_url.clone(),
                client_id: client_id.clone(),
                secret,
            }),
        };
        if let Some(r) = resolved {
            credentials.push((name.clone(), r));
        }
    }
    let tls = match upstream_tls(base, h) {
        Ok(tls) => tls,
        Err((key, message)) => {
            error(key, message);
            None
        }
    };
    HttpConfig {
        allow: h.allow.clone(),
        timeout_ms: h.timeout_ms,
        max_response_bytes: usize::try_from(h.max_response_mib << 20).unwrap_or(usize::MAX),
        credentials,
        tls,
    }
}

/// The rustls client configuration for a source's https upstream: its CA
/// bundle and, optionally, its client certificate.
fn upstream_tls(
    base: &Path,
    h: &HttpSection,
) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, (&'static str, String)> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let Some(ca) = &h.ca_file else {
        if h.client_cert_file.is_some() {
            return Err((
                "http.client_cert_file",
                "a client certificate needs `http.ca_file` (https)".into(),
            ));
        }
        return Ok(None);
    };
    let ca = base.join(ca);
    let certs = |path: &Path,
                 key: &'static str|
     -> Result<Vec<CertificateDer<'static>>, (&'static str, String)> {
        CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| (key, format!("{}: {e}", path.display())))
            .and_then(|c| {
                if c.is_empty() {
                    Err((key, format!("{}: no PEM certificate in it", path.display())))
                } else {
                    Ok(c)
                }
            })
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(&ca, "http.ca_file")? {
        roots
            .add(cert)
            .map_err(|e| ("http.ca_file", format!("{}: {e}", ca.display())))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| ("http.ca_file", e.to_string()))?
    .with_root_certificates(roots);
    let config = match (&h.client_cert_file, &h.client_key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let (cert, key) = (base.join(cert), base.join(key));
            let chain = certs(&cert, "http.client_cert_file")?;
            let key = PrivateKeyDer::from_pem_file(&key)
                .map_err(|e| ("http.client_key_file", format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ("http.client_key_file", e.to_string()))?
        }
        _ => {
            return Err((
                "http.client_cert_file",
                "give both `client_cert_file` and `client_key_file`, or neither".into(),
            ));
        }
    };
    Ok(Some(std::sync::Arc::new(config)))
}

/// Check the scheme; make a relative SQLite path relative to the file that
/// names it, and require the database file to exist (the gateway opens it
/// read-only and never creates one).
fn resolve_database_url(base: &Path, url: &str) -> Result<String, String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return match url.split(':').next() {
            Some("postgres" | "postgresql" | "mysql" | "mariadb") => Ok(url.to_string()),
            _ => Err("must start with sqlite:, postgres:, mysql: or mariadb:".into()),
        };
    };
    let rest = rest.trim_start_matches("//");
    let (file, query) = rest
        .split_once('?')
        .map_or((rest, None), |(f, q)| (f, Some(q)));
    let path = base.join(file);
    if !path.is_file() {
        return Err(format!(
            "no database file at {} (generate the demo data with `cargo xtask demo`)",
            path.display()
        ));
    }
    Ok(match query {
        Some(q) => format!("sqlite://{}?{q}", path.display()),
        None => format!("sqlite://{}", path.display()),
    })
}

/// Read a source file laid over its template (`config::template`).
fn read_source(file: &Path, dir: &Path) -> Result<(SourceFile, Option<PathBuf>), ConfigError> {
    let layered = super::template::read(file, dir)?;
    if layered.template.is_none() {
        // The file alone: read from its text, so errors name their line.
        return Ok((read_file::<SourceFile>(file)?, None));
    }
    let raw = layered.parse::<SourceFile>(file)?;
    Ok((raw, layered.template))
}

/// Read and deserialize one TOML file, naming the key and line of an error.
fn read_file<T: DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(file, "", format!("cannot read the file: {e}")))?;
    parse(file, &text)
}

pub(crate) fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
    };
    let deserializer = toml::de::Deserializer::parse(text).map_err(|e| {
        let at = line_of(e.span())
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        ConfigError::new(
            file,
            "",
            format!("not valid TOML{at}: {}", e.message().trim()),
        )
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let mut key = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().trim().to_string();
        // serde names an unknown key in the message, not the path.
        if let Some(unknown) = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
            && key.rsplit('.').next() != Some(unknown)
        {
            key = if key == "." {
                unknown.to_string()
            } else {
                format!("{key}.{unknown}")
            };
        }
        if key == "." {
            key.clear();
        }
        let at = line_of(inner.span())
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        ConfigError::new(file, key, format!("{message}{at}"))
    })
}

/// A listener address that may be "" (none).
fn optional_address(
    path: &Path,
    key: &str,
    value: &str,
    example: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<SocketAddr> {
    if value.is_empty() {
        return None;
    }
    value
        .parse::<SocketAddr>()
        .map_err(|e| {
            errors.push(ConfigError::new(
                path,
                key,
                format!("`{value}` is not an address like {example}, or \"\" for none ({e})"),
            ))
        })
        .ok()
}

/// `[server.tls]`: files resolved and the configuration built once, so a
/// bad certificate is reported at load; plain HTTP only when asked for.
fn resolve_tls(
    path: &Path,
    base: &Path,
    server: &super::ServerSection,
    errors: &mut Vec<ConfigError>,
) -> Option<crate::tls::TlsFiles> {
    let Some(tls) = &server.tls else {
        if !server.plaintext {
            errors.push(ConfigError::new(
                path,
                "server.tls",
                "configure [server.tls] (cert_file, key_file), or serve plain HTTP explicitly with `plaintext = true`",
            ));
        }
        return None;
    };
    let mut clients = Vec::new();
    for (i, c) in tls.clients.iter().enumerate() {
        let key = format!("server.tls.clients[{i}]");
        let Some(level) = lianqiao_policy::Level::parse(&c.level) else {
            errors.push(ConfigError::new(
                path,
                format!("{key}.level"),
                format!("must be one of {}", lianqiao_policy::Level::names()),
            ));
            continue;
        };
        match lianqiao_policy::authn::identity(&c.id, level, &c.division, c.roles.clone(), "mtls") {
            Ok(identity) => clients.push((c.name.clone(), identity)),
            Err(e) => errors.push(ConfigError::new(path, format!("{key}.division"), e)),
        }
    }
    if !tls.clients.is_empty() && tls.client_ca_file.is_none() {
        errors.push(ConfigError::new(
            path,
            "server.tls.client_ca_file",
            "client certificates are mapped to principals, so name the CA that signs them",
        ));
    }
    let files = crate::tls::TlsFiles {
        cert: base.join(&tls.cert_file),
        key: base.join(&tls.key_file),
        client_ca: tls.client_ca_file.as_ref().map(|f| base.join(f)),
        require_client_cert: tls.require_client_cert,
        clients,
    };
    match crate::tls::server_config(&files) {
        Ok(_) => Some(files),
        Err(e) => {
            errors.push(ConfigError::new(
                path,
                "server.tls",
                format!("{e} (the demo writes its certificates: cargo xtask demo)"),
            ));
            None
        }
    }
}

/// `[auth]`: issuers' keys read and checked, API keys checked.
fn load_auth(
    path: &Path,
    base: &Path,
    auth: &super::AuthSection,
    errors: &mut Vec<ConfigError>,
) -> lianqiao_policy::Authenticator {
    use lianqiao_policy::authn;
    let mut issuers = Vec::new();
    for (i, issuer) in auth.issuers.iter().enumerate() {
        let key = format!("auth.issuers[{i}]");
        let Some(algorithm) = authn::algorithm(&issuer.algorithm) else {
            errors.push(ConfigError::new(
                path,
                format!("{key}.algorithm"),
                format!(
                    "`{}` is not accepted; use EdDSA, ES256 or RS256",
                    issuer.algorithm
                ),
            ));
            continue;
        };
        let file = base.join(&issuer.public_key_file);
        let pem = match std::fs::read(&file) {
            Ok(pem) => pem,
            Err(e) => {
                errors.push(ConfigError::new(
                    path,
                    format!("{key}.public_key_file"),
                    format!(
                        "cannot read {}: {e} (the demo writes it: cargo xtask demo)",
                        file.display()
                    ),
                ));
                continue;
            }
        };
        match authn::decoding_key(algorithm, &pem) {
            Ok(decoding) => issuers.push(authn::Issuer {
                issuer: issuer.issuer.clone(),
                audience: issuer.audience.clone(),
                key: decoding,
                algorithm,
            }),
            Err(e) => errors.push(ConfigError::new(path, format!("{key}.public_key_file"), e)),
        }
    }
    let mut api_keys = Vec::new();
    for (i, k) in auth.api_keys.iter().enumerate() {
        let key = format!("auth.api_keys[{i}]");
        if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            errors.push(ConfigError::new(
                path,
                format!("{key}.sha256"),
                "must be the SHA-256 of the key as 64 hex digits (`lianqiao auth hash-key` prints it)",
            ));
            continue;
        }
        let Some(level) = lianqiao_policy::Level::parse(&k.level) else {
            errors.push(ConfigError::new(
                path,
                format!("{key}.level"),
                format!("must be one of {}", lianqiao_policy::Level::names()),
            ));
            continue;
        };
        match authn::identity(&k.id, level, &k.division, k.roles.clone(), "api-key") {
            Ok(identity) => api_keys.push(authn::ApiKey {
                sha256: k.sha256.clone(),
                identity,
            }),
            Err(e) => errors.push(ConfigError::new(path, format!("{key}.division"), e)),
        }
    }
    if auth.issuers.is_empty() && auth.api_keys.is_empty() {
        errors.push(ConfigError::new(
            path,
            "auth",
            "configure at least one [[auth.issuers]] or [[auth.api_keys]]: every request needs a credential",
        ));
    }
    authn::Authenticator::new(issuers, api_keys)
}

/// The audit store's URL: `url_env` wins; a relative SQLite path is
/// relative to the config file.
fn resolve_audit_url(
    path: &Path,
    base: &Path,
    audit: &super::AuditSection,
    errors: &mut Vec<ConfigError>,
) -> String {
    let url = if audit.url_env.is_empty() {
        audit.url.clone()
    } else {
        match std::env::var(&audit.url_env) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                errors.push(ConfigError::new(
                    path,
                    "audit.url_env",
                    format!("environment variable {} is not set", audit.url_env),
                ));
                return String::new();
            }
        }
    };
    if audit.chain.is_empty() || audit.batch_max == 0 {
        errors.push(ConfigError::new(
            path,
            "audit",
            "`chain` must be a name and `batch_max` at least 1",
        ));
    }
    if let Some(file) = url.strip_prefix("sqlite://") {
        let file = file.split('?').next().unwrap_or(file);
        let resolved = std::path::absolute(base.join(file)).unwrap_or_else(|_| base.join(file));
        return format!("sqlite://{}", resolved.display());
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return url;
    }
    errors.push(ConfigError::new(
        path,
        "audit.url",
        "must be sqlite://<file> or postgres://…",
    ));
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitsSection;

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let e = parse::<SourceFile>(
            Path::new("s.toml"),
            "name = \"a\"\ncoverage = [\"15\"]\n[plugin]\npath = \"x\"\n[limits]\nmemry_mib = 3\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "limits.memry_mib");
        assert!(e.message.contains("unknown field"), "{}", e.message);
        assert!(e.message.contains("line 6"), "{}", e.message);
    }

    #[test]
    fn wrong_type_is_named_with_its_path() {
        let e = parse::<LimitsSection>(Path::new("s.toml"), "memory_mib = \"lots\"\n").unwrap_err();
        assert_eq!(e.key, "memory_mib");
        assert!(e.message.contains("line 1"), "{}", e.message);
    }

    #[test]
    fn a_nice_value_past_19_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/lianqiao.toml");
        let text = std::fs::read_to_string(shipped).unwrap().replacen(
            "[server]\n",
            "[server]\nwide_request_nice = 20\n",
            1,
        );
        let file = dir.path().join("lianqiao.toml");
        std::fs::write(&file, text).unwrap();
        let errors = load(&file).unwrap_err();
        let nice = errors
            .0
            .iter()
            .find(|e| e.key == "server.wide_request_nice")
            .unwrap_or_else(|| panic!("{errors:?}"));
        assert!(nice.message.contains("19"), "{}", nice.message);
    }

    #[test]
    fn bad_toml_says_where() {
        let e = parse::<LimitsSection>(Path::new("s.toml"), "\n\nmemory_mib = = 3\n").unwrap_err();
        assert!(e.message.contains("line 3"), "{}", e.message);
    }
}
