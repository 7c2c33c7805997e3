//! The audit trail for auditors: search records by principal, division,
//! resource and time, see whether the chain verifies (and the first broken
//! record if not), export a search as CSV for an inspector. The trail is
//! personal data itself (queries carry filter values), so these pages need
//! the `auditor` role, and every search and export is itself audited
//! before its answer leaves.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};

use super::{Answer, answer, record, refuse, session, signed_in};
use crate::audit::{AuditStore, Query, Stored};
use crate::error::{ApiError, ErrorCode};
use crate::state::{Gateway, Live};

/// Rows a search shows (and exports) at most.
pub const MAX_ROWS: i64 = 1_000;

/// A search: each filter optional.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub principal: Option<String>,
    pub division: Option<String>,
    pub resource: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: i64,
}

fn parse(raw: Option<&str>) -> Result<Search, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let time = |name: &str| -> Result<Option<String>, ApiError> {
        match get(name) {
            None => Ok(None),
            Some(t) if looks_like_time(&t) => Ok(Some(t)),
            Some(t) => Err(ApiError::invalid(format!(
                "`{name}` is an RFC 3339 time or a date (2026-12-04 or 2026-12-04T08:00:00Z), got `{t}`"
            ))),
        }
    };
    let division = get("division");
    if let Some(d) = &division
        && !crate::config::is_division_code(d)
    {
        return Err(ApiError::invalid(format!(
            "`division` is a division code ({}), got `{d}`",
            lianqiao_policy::division::CONVENTION
        )));
    }
    let resource = get("resource");
    if let Some(r) = &resource
        && crate::model::entity(r).is_none()
    {
        return Err(ApiError::invalid(format!(
            "`resource` is one of {}, got `{r}`",
            crate::model::ENTITIES
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let limit = match get("limit") {
        None => 200,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_ROWS).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "`limit` is a number from 1 to {MAX_ROWS}, got `{l}`"
                ))
            })?,
    };
    Ok(Search {
        principal: get("principal"),
        division,
        resource,
        since: time("since")?,
        until: time("until")?,
        limit,
    })
}

/// `2026-12-04` or an RFC 3339 time: digits and the separators only, so
/// the string comparison on the stored form means what it says.
fn looks_like_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 10
        && b.len() <= 35
        && b[4] == b'-'
        && b[7] == b'-'
        && b[..4]
            .iter()
            .chain(&b[5..7])
            .chain(&b[8..10])
            .all(u8::is_ascii_digit)
        && t[10..]
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, 'T' | 'Z' | ':' | '.' | '+' | '-'))
}

fn unreadable(e: String) -> ApiError {
    ApiError::new(
        ErrorCode::AuditUnavailable,
        format!("the audit store cannot be read now: {e}"),
    )
}

/// The records of a search, newest first, and the chain's verification.
async fn run(gateway: &Gateway, search: &Search) -> Result<(Vec<Stored>, Value), ApiError> {
    let store = AuditStore::open(&gateway.config.audit_url)
        .await
        .map_err(unreadable)?;
    let chain = gateway.audit.chain.clone();
    let query = Query {
        chain: Some(chain.clone()),
        principal: search.principal.clone(),
        division: search.division.clone(),
        since: search.since.clone(),
        until: search.until.clone(),
        resource: search.resource.clone(),
        limit: search.limit,
    };
    let rows = store.query(&query).await.map_err(unreadable)?;
    let verified = verification(&store, &gateway.config.audit_url, &chain, false)
        .await
        .map_err(unreadable)?;
    store.close().await;
    Ok((rows, verified))
}

/// What this process knows of a chain's integrity: verified in full once
/// (at the first look, or when an auditor asks), then record by record as
/// new ones are read, from the last verified record on. A full walk costs
/// time in proportion to the chain; a page view costs only the records
/// written since the last one.
#[derive(Clone)]
struct Verified {
    checkpoint: Option<crate::audit::Checkpoint>,
    records: u64,
    full_at: std::time::SystemTime,
    full_took: std::time::Duration,
    broken: Option<crate::audit::Broken>,
}

type Known = std::collections::HashMap<(String, String), Verified>;
/// Held for a whole verification: a view that began before a full run
/// must not write its older state over the full run's finding.
static VERIFIED: tokio::sync::Mutex<Option<Known>> = tokio::sync::Mutex::const_new(None);

/// The chain's verification: in full when `full` or never done in this
/// process, else from the last verified record on. A broken chain stays
/// broken until a full verification finds it whole again.
async fn verification(
    store: &AuditStore,
    url: &str,
    chain: &str,
    full: bool,
) -> Result<Value, String> {
    let mut known_chains = VERIFIED.lock().await;
    let key = (url.to_string(), chain.to_string());
    let known = known_chains.as_ref().and_then(|m| m.get(&key).cloned());
    let now = match known {
        Some(k) if !full && k.broken.is_some() => k,
        Some(k) if !full => {
            match crate::audit::verify_after(store, chain, k.checkpoint.as_ref()).await? {
                Ok((n, checkpoint)) => Verified {
                    checkpoint: checkpoint.or(k.checkpoint.clone()),
                    records: k.records + n,
                    ..k
                },
                Err(broken) => Verified {
                    broken: Some(broken),
                    ..k
                },
            }
        }
        _ => {
            let began = std::time::Instant::now();
            let outcome = crate::audit::verify_after(store, chain, None).await?;
            let (records, checkpoint, broken) = match outcome {
                Ok((n, checkpoint)) => (n, checkpoint, None),
                Err(broken) => (0, None, Some(broken)),
            };
            Verified {
                checkpoint,
                records,
                full_at: std::time::SystemTime::now(),
                full_took: began.elapsed(),
                broken,
            }
        }
    };
    known_chains
        .get_or_insert_with(Known::new)
        .insert(key, now.clone());
    drop(known_chains);
    let whole = json!({
        "at": crate::audit::rfc3339(now.full_at),
        "took_ms": now.full_took.as_millis() as u64,
    });
    Ok(match &now.broken {
        None => {
            json!({ "chain": chain, "ok": true, "records": now.records, "verified_in_full": whole })
        }
        Some(b) => json!({
            "chain": chain, "ok": false, "first_broken": b.seq, "reason": b.reason,
            "message": b.to_string(), "verified_in_full": whole,
        }),
    })
}

/// `POST /console/audit/verify` (`csrf`): verify the whole chain now (an
/// auditor's "check everything again"); audited like a search.
pub async fn verify_now(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let how = super::answer_post(&headers);
    let gateway = live.current();
    let outcome = async {
        let (session, _) = super::changing(&headers, &body, session::AUDITOR_ROLE)?;
        let store = AuditStore::open(&gateway.config.audit_url)
            .await
            .map_err(unreadable)?;
        let chain = gateway.audit.chain.clone();
        let verified = verification(&store, &gateway.config.audit_url, &chain, true)
            .await
            .map_err(unreadable)?;
        store.close().await;
        let audit = record(
            Some(&session.principal),
            "POST",
            "/console/audit/verify",
            format!("chain={chain}"),
            gateway.config.enforcer.engine.version(),
        );
        gateway.audit.allowed(audit, "the verification").await?;
        Ok(verified)
    }
    .await;
    match (outcome, how) {
        (Ok(verified), Answer::Json) => Json(verified).into_response(),
        (Ok(_), Answer::Html) => axum::response::Redirect::to("/console/audit").into_response(),
        (Err(e), how) => refuse(how, e),
    }
}

/// One record as the page, the JSON and the CSV show it.
fn row(r: &Stored) -> Value {
    let rec = r.record().ok();
    let get =
        |f: fn(&crate::audit::AuditRecord) -> Value| rec.as_ref().map(f).unwrap_or(Value::Null);
    json!({
        "seq": r.seq,
        "at": r.at,
        "request_id": r.request_id,
        "principal": r.principal,
        "division": r.division,
        "level": get(|x| json!(x.level)),
        "purpose": get(|x| json!(x.purpose)),
        "method": get(|x| json!(x.method)),
        "route": get(|x| json!(x.route)),
        "resource": get(|x| json!(x.resource)),
        "query": get(|x| json!(x.query)),
        "scope": get(|x| json!(x.scope)),
        "rows": get(|x| json!(x.rows)),
        "masked": get(|x| json!(x.masked)),
        "decision": r.decision,
        "status": r.status,
        "policies": get(|x| json!(x.policies)),
        "policy_version": get(|x| json!(x.policy_version)),
    })
}

/// Session with the auditor role, the search, its records — and the
/// record of this search itself, written before anything is answered.
async fn searched(
    live: &Live,
    headers: &HeaderMap,
    raw: Option<&str>,
    route: &str,
) -> Result<(session::Session, Search, Vec<Value>, Value), ApiError> {
    let gateway = live.current();
    let session = signed_in(headers, session::AUDITOR_ROLE)?;
    // A search writes a record in the auditor's name: another site's page
    // (an <img> on a sibling port) may not make one.
    session::same_origin(headers).map_err(|why| {
        ApiError::forbidden(
            "cross_site",
            format!("refused: {why}; search from the console's own pages"),
            Vec::new(),
        )
    })?;
    let search = parse(raw)?;
    let (rows, verified) = run(&gateway, &search).await?;
    let mut audit = record(
        Some(&session.principal),
        "GET",
        route,
        raw.unwrap_or("").to_string(),
        gateway.config.enforcer.engine.version(),
    );
    audit.rows = rows.len() as u64;
    gateway.audit.allowed(audit, "this search").await?;
    Ok((session, search, rows.iter().map(row).collect(), verified))
}

pub async fn json(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match searched(&live, &headers, raw.as_deref(), "/console/audit.json").await {
        Ok((_, _, rows, verified)) => Json(json!({
            "verification": verified,
            "records": rows,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn page(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if answer(&headers) == Answer::Json {
        return json(State(live), headers, RawQuery(raw)).await;
    }
    match searched(&live, &headers, raw.as_deref(), "/console/audit").await {
        Ok((session, search, rows, verified)) => Html(super::page::audit(
            &session,
            &search,
            raw.as_deref().unwrap_or(""),
            &rows,
            &verified,
        ))
        .into_response(),
        Err(e) => refuse(Answer::Html, e),
    }
}

/// `GET /console/audit.csv?…`: the search as CSV, one record a line.
pub async fn csv(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match searched(&live, &headers, raw.as_deref(), "/console/audit.csv").await {
        Ok((_, _, rows, _)) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"lianqiao-audit.csv\"",
                ),
            ],
            to_csv(&rows),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

const COLUMNS: [&str; 16] = [
    "seq",
    "at",
    "request_id",
    "principal",
    "level",
    "division",
    "purpose",
    "method",
    "route",
    "resource",
    "query",
    "scope",
    "rows",
    "decision",
    "status",
    "policy_version",
];

/// RFC 4180 CSV. A cell a spreadsheet would run as a formula (`=`, `+`,
/// `-`, `@` first) is prefixed with `'`: the export is opened by people.
pub fn to_csv(rows: &[Value]) -> String {
    let cell = |v: &Value| {
        let text = match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) && !v.is_number() {
            format!("'{text}")
        } else {
            text
        };
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text
        }
    };
    let mut out = COLUMNS.join(",");
    out.push_str("\r\n");
    for r in rows {
        out.push_str(
            &COLUMNS
                .iter()
                .map(|c| cell(&r[*c]))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting_and_defuses_formulas() {
        let rows = vec![json!({
            "seq": 7, "at": "2026-12-04T08:00:00Z", "principal": "=HYPERLINK(\"x\")",
            "query": "division=150103&fields=name,phone", "rows": 3, "status": 200,
        })];
        let text = to_csv(&rows);
        let line = text.lines().nth(1).unwrap_or_default();
        assert!(line.starts_with("7,2026-12-04T08:00:00Z,,"), "{line}");
        assert!(line.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{line}");
        assert!(
            line.contains("\"division=150103&fields=name,phone\""),
            "{line}"
        );
    }

    #[test]
    fn times_are_dates_or_rfc3339_only() {
        assert!(looks_like_time("2026-12-04"));
        assert!(looks_like_time("2026-12-04T08:00:00.123Z"));
        assert!(!looks_like_time("2026-12-04' OR 1=1"));
        assert!(!looks_like_time("yesterday"));
    }
}
