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
    if server.max_concurrent_requests == 0 {
        errors.push(ConfigError::new(
            path,
            "server.max_concurrent_requests",
            "must be at least 1",
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
    for file in &files {
        match read_file::<SourceFile>(file) {
            Ok(raw) => {
                if let Some((_, other)) = names.iter().find(|(n, _)| *n == raw.name) {
                    errors.push(ConfigError::new(
                        file,
                        "name",
                        format!("`{}` is already used by {}", raw.name, other.display()),
                    ));
                }
                names.push((raw.name.clone(), file.clone()));
                if let Some(source) = validate_source(file, raw, &main, &mut errors) {
                    sources.push(source);
                }
            }
            Err(e) => errors.push(e),
        }
    }

    let fields_file = base.join(&main.model.fields);
    let field_classes = match std::fs::read_to_string(&fields_file) {
        Ok(text) => crate::model::FieldClasses::parse(&text).unwrap_or_else(|problems| {
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

    let metrics_listen = match main.telemetry.metrics_listen.as_str() {
        "" => None,
        addr => addr
            .parse::<SocketAddr>()
            .map_err(|e| {
                errors.push(ConfigError::new(
                    path,
                    "telemetry.metrics_listen",
                    format!(
                        "`{addr}` is not an address like 127.0.0.1:9464, or \"\" for none ({e})"
                    ),
                ))
            })
            .ok(),
    };

    match (errors.is_empty(), listen) {
        (true, Some(listen)) => Ok(Config {
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

fn validate_source(
    file: &Path,
    raw: SourceFile,
    main: &GatewayFile,
    errors: &mut Vec<ConfigError>,
) -> Option<SourceConfig> {
    let before = errors.len();
    let base = file.parent().unwrap_or(Path::new("."));
    let mut error = |key: &str, message: String| errors.push(ConfigError::new(file, key, message));

    let name_ok = !raw.name.is_empty()
        && raw.name.len() <= 64
        && raw
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !name_ok {
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
                format!("`{code}` is not a division code (2–32 letters or digits)"),
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
    if limits.max_concurrent == 0 {
        error("limits.max_concurrent", "must be at least 1".into());
    }
    if limits.max_rows == 0 {
        error("limits.max_rows", "must be at least 1".into());
    }

    let mut sql_url = None;
    let mut sql_max_connections = 0;
    if let Some(sql) = &raw.sql {
        sql_max_connections = sql.max_connections;
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
        name: raw.name,
        description: raw.description,
        plugin,
        sha256: raw.plugin.sha256,
        coverage: raw.coverage,
        enrich: raw.enrich,
        limits: raw.limits,
        sql_url,
        sql_max_connections,
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
        let ok = prefix
            .parse::<hyper::Uri>()
            .is_ok_and(|u| u.scheme_str() == Some("http") && u.authority().is_some());
        if !ok {
            error(
                &format!("http.allow[{i}]"),
                format!("`{prefix}` is not an http://host:port/path prefix"),
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
    HttpConfig {
        allow: h.allow.clone(),
        timeout_ms: h.timeout_ms,
        max_response_bytes: usize::try_from(h.max_response_mib << 20).unwrap_or(usize::MAX),
        credentials,
    }
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
    fn bad_toml_says_where() {
        let e = parse::<LimitsSection>(Path::new("s.toml"), "\n\nmemory_mib = = 3\n").unwrap_err();
        assert!(e.message.contains("line 3"), "{}", e.message);
    }
}
