//! Operators' commands: `lianqiao policy …`, `lianqiao audit …`,
//! `lianqiao auth …`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use lianqiao_gateway::audit::{self, AuditStore};
use lianqiao_policy::authn::{self, Claims};
use lianqiao_policy::{Enforcer, Level, PolicyEngine, Principal};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Check every policy against the schema (strict mode).
    Validate {
        #[arg(long, default_value = "config/policy")]
        dir: PathBuf,
    },
    /// Run the table-driven cases in DIR (principal + request → decision,
    /// scope, visible fields).
    Test {
        #[arg(default_value = "config/policy/tests")]
        cases: PathBuf,
        #[arg(long, default_value = "config/policy")]
        dir: PathBuf,
        #[arg(long, default_value = "config/fields.toml")]
        fields: PathBuf,
    },
    /// What the policy decides for one principal and request, and why.
    Explain {
        #[arg(long)]
        level: String,
        /// The principal's division (its jurisdiction).
        #[arg(long)]
        division: String,
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        #[arg(long, default_value = "case-handling")]
        purpose: String,
        /// members, cases, grids, …
        #[arg(long)]
        resource: String,
        /// The division asked for (default: the principal's).
        #[arg(long = "in")]
        within: Option<String>,
        /// list or aggregate.
        #[arg(long, default_value = "list")]
        action: String,
        #[arg(long, default_value = "config/policy")]
        dir: PathBuf,
        #[arg(long, default_value = "config/fields.toml")]
        fields: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; name the first broken record.
    Verify {
        /// sqlite://file or postgres://… (default: the config's [audit]).
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
        /// Only this chain (default: every chain in the store).
        #[arg(long)]
        chain: Option<String>,
    },
    /// Print records, newest first, as JSON lines.
    Query {
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value = "config/lianqiao.toml")]
        config: PathBuf,
        #[arg(long)]
        principal: Option<String>,
        /// Records answered in this division's subtree.
        #[arg(long)]
        division: Option<String>,
        /// Records about this resource (members, cases, …; a statistic's).
        #[arg(long)]
        resource: Option<String>,
        /// RFC 3339, e.g. 2026-11-22T00:00:00Z
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Write a new Ed25519 issuer key pair: DIR/issuer.pem, DIR/issuer.pub.pem.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a token signed with an Ed25519 issuer key.
    Token {
        /// The issuer's private key (PEM).
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "lianqiao-demo")]
        issuer: String,
        #[arg(long, default_value = "lianqiao")]
        audience: String,
        #[arg(long)]
        sub: String,
        #[arg(long)]
        level: String,
        #[arg(long)]
        division: String,
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
    /// Print the SHA-256 of an API key, for `[[auth.api_keys]] sha256`.
    HashKey { key: String },
    /// Write a local CA and certificates for the demo: ca.pem,
    /// gateway.pem/.key (127.0.0.1, localhost), city-platform.pem/.key (a
    /// client certificate), upstream.pem/.key.
    DemoCerts {
        #[arg(long)]
        out: PathBuf,
    },
}

fn enforcer(dir: &Path, fields: &Path) -> Result<Enforcer, String> {
    let engine = PolicyEngine::load(dir).map_err(|problems| {
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let text = std::fs::read_to_string(fields).map_err(|e| format!("{}: {e}", fields.display()))?;
    let catalog = lianqiao_gateway::model::parse_field_classes(&text).map_err(|problems| {
        problems
            .iter()
            .map(|(k, m)| format!("{}: {k}: {m}", fields.display()))
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(Enforcer {
        engine: Arc::new(engine),
        catalog: Arc::new(catalog),
    })
}

pub fn policy(command: PolicyCommand) -> ExitCode {
    match command {
        PolicyCommand::Validate { dir } => match PolicyEngine::load(&dir) {
            Ok(engine) => {
                println!(
                    "{}: OK, {} policies, version {}",
                    dir.display(),
                    engine.policies().count(),
                    engine.version()
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in problems {
                    eprintln!("{p}");
                }
                ExitCode::FAILURE
            }
        },
        PolicyCommand::Test { cases, dir, fields } => {
            let result =
                enforcer(&dir, &fields).and_then(|e| lianqiao_policy::cases::run_dir(&e, &cases));
            match result {
                Ok(results) => {
                    let failed = results.iter().filter(|r| !r.passed()).count();
                    for r in &results {
                        if r.passed() {
                            println!("ok    {}", r.name);
                        } else {
                            println!("FAIL  {} ({})", r.name, r.file);
                            for p in &r.problems {
                                println!("        {p}");
                            }
                        }
                    }
                    println!("{} cases, {failed} failed", results.len());
                    if failed == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        PolicyCommand::Explain {
            level,
            division,
            roles,
            purpose,
            resource,
            within,
            action,
            dir,
            fields,
        } => {
            let Some(level) = Level::parse(&level) else {
                eprintln!("--level is one of {}", Level::names());
                return ExitCode::FAILURE;
            };
            match enforcer(&dir, &fields) {
                Ok(e) => {
                    let p = Principal::new("explain", level, division.clone(), roles, purpose);
                    let out = e.explain(
                        &p,
                        &action,
                        &resource,
                        within.as_deref().unwrap_or(&division),
                    );
                    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn audit_url(url: Option<String>, config: &Path) -> Result<String, String> {
    if let Some(url) = url {
        return Ok(url);
    }
    let config = lianqiao_gateway::config::load(config).map_err(|e| e.to_string())?;
    Ok(config.audit_url)
}

pub async fn audit(command: AuditCommand) -> ExitCode {
    let run = async {
        match command {
            AuditCommand::Verify { url, config, chain } => {
                let store = AuditStore::open(&audit_url(url, &config)?).await?;
                let chains = match chain {
                    Some(c) => vec![c],
                    None => store.chains().await?,
                };
                let mut ok = true;
                for chain in chains {
                    match audit::verify(&store, &chain).await? {
                        Ok(n) => println!("chain `{chain}`: OK, {n} records"),
                        Err(broken) => {
                            println!("{broken}");
                            ok = false;
                        }
                    }
                }
                Ok::<bool, String>(ok)
            }
            AuditCommand::Query {
                url,
                config,
                principal,
                division,
                resource,
                since,
                until,
                limit,
            } => {
                let store = AuditStore::open(&audit_url(url, &config)?).await?;
                let records = store
                    .query(&audit::Query {
                        chain: None,
                        principal,
                        division,
                        since,
                        until,
                        resource,
                        limit,
                    })
                    .await?;
                for r in records {
                    println!("{}", r.body);
                }
                Ok(true)
            }
        }
    };
    match run.await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

pub fn auth(command: AuthCommand) -> ExitCode {
    let result = match command {
        AuthCommand::Keygen { out } => authn::generate_ed25519().and_then(|(private, public)| {
            std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
            std::fs::write(out.join("issuer.pem"), private).map_err(|e| e.to_string())?;
            std::fs::write(out.join("issuer.pub.pem"), public).map_err(|e| e.to_string())?;
            Ok(format!(
                "wrote {0}/issuer.pem (keep it secret) and {0}/issuer.pub.pem (for [[auth.issuers]] public_key_file)",
                out.display()
            ))
        }),
        AuthCommand::Token {
            key,
            issuer,
            audience,
            sub,
            level,
            division,
            roles,
            ttl,
        } => Level::parse(&level)
            .ok_or_else(|| format!("`--level` is one of {}", Level::names()))
            // Refuse now what the gateway would refuse on every request.
            .and_then(|l| authn::identity(&sub, l, &division, roles.clone(), "cli"))
            .and_then(|_| {
                std::fs::read_to_string(&key).map_err(|e| format!("{}: {e}", key.display()))
            })
            .and_then(|pem| {
                authn::issue_ed25519(
                    &pem,
                    &Claims {
                        sub,
                        iss: issuer,
                        aud: audience,
                        exp: authn::now() + ttl,
                        nbf: None,
                        level,
                        division,
                        roles,
                    },
                )
            }),
        AuthCommand::HashKey { key } => Ok(authn::sha256_hex(&key)),
        AuthCommand::DemoCerts { out } => lianqiao_gateway::tls::certs::write_demo(&out)
            .map(|()| format!("wrote a demo CA and certificates to {}", out.display())),
    };
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
