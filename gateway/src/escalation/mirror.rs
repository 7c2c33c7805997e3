//! After a whistle, the city platform's departments move the city case
//! (接诉即办: `accepted` → `reported_in` → `feedback` → `evaluated` →
//! `closed`); the district record mirrors each move, so the district keeps
//! one record of the whole story.
//!
//! The worker reads the platform's `updatedSince` feed through the city
//! source (`updated_at >= T`, read fresh by its plugin), and moves the
//! district record one state at a time, each move guarded by the state it
//! starts from: two gateways mirroring at once apply each move once (the
//! second finds it made and goes on).

use lianqiao_host::PluginError;
use lianqiao_host::contract::{
    Command, CommandError, Filter, FilterOp, Query, Step, Transition, Value,
};

use crate::cases::outbox::Entry;
use crate::sources::CallOptions;
use crate::state::Gateway;

/// The city loop's states, in order.
const CITY_ORDER: &[&str] = &["accepted", "reported_in", "feedback", "evaluated", "closed"];

/// What the feed says of one city case.
struct CityCase {
    state: String,
    updated_at: String,
    satisfaction: Option<i64>,
}

/// Mirror every linked case that has moved on the platform.
pub async fn mirror_once(gateway: &Gateway) -> Result<(), String> {
    let Some(city) = gateway
        .transitions
        .whistle_to
        .as_deref()
        .and_then(|name| gateway.sources.sources.iter().find(|s| s.name() == name))
        .cloned()
    else {
        return Ok(());
    };
    for (entry, mirrored, since) in gateway.writes.mirroring(64).await? {
        let Some(now) = read(&city, &entry, &since).await? else {
            continue;
        };
        let (Some(from), Some(to)) = (
            CITY_ORDER.iter().position(|s| *s == mirrored),
            CITY_ORDER.iter().position(|s| *s == now.state),
        ) else {
            continue;
        };
        let mut reached = from;
        for next in from + 1..=to {
            match apply(
                gateway,
                &entry,
                CITY_ORDER[next - 1],
                CITY_ORDER[next],
                &now,
            )
            .await
            {
                Ok(()) => reached = next,
                Err(e) => {
                    tracing::warn!(case = %entry.whistle.case_id, to = CITY_ORDER[next], error = %e, "cannot mirror a city move; retrying");
                    break;
                }
            }
        }
        if reached > from {
            let at = if reached == to {
                now.updated_at.clone()
            } else {
                since.clone()
            };
            gateway
                .writes
                .mirrored(&entry.id, CITY_ORDER[reached], &at)
                .await?;
        }
    }
    Ok(())
}

/// The city case's state from the feed, if it changed since `since`.
async fn read(
    city: &crate::sources::Source,
    entry: &Entry,
    since: &str,
) -> Result<Option<CityCase>, String> {
    let since = if since.is_empty() {
        "2000-01-01T00:00:00+08:00"
    } else {
        since
    };
    let query = Query {
        entity: "cases".into(),
        scope: vec![entry.whistle.division.clone()],
        filters: vec![Filter {
            field: "updated_at".into(),
            op: FilterOp::Gte,
            values: vec![Value::Timestamp(since.to_string())],
        }],
        projection: ["id", "division", "state", "updated_at", "satisfaction"]
            .map(String::from)
            .to_vec(),
        limit: 500,
        cursor: None,
    };
    // Never from the gateway's response cache: the feed is what changed.
    let how = CallOptions {
        cache: false,
        retry: true,
        breaker: true,
    };
    let page = city
        .query(query, how)
        .await
        .map_err(|e| crate::redact::operator(&e))?;
    let col = |name: &str| page.columns.iter().position(|c| c == name);
    let (Some(id), Some(state), Some(updated)) = (col("id"), col("state"), col("updated_at"))
    else {
        return Err("the city source's feed lacks id, state or updated_at".into());
    };
    let text = |row: &Vec<Value>, i: usize| match row.get(i) {
        Some(Value::Text(t) | Value::Timestamp(t)) => Some(t.clone()),
        _ => None,
    };
    Ok(page
        .rows
        .iter()
        .find(|row| text(row, id).as_deref() == Some(entry.city_case.as_str()))
        .map(|row| CityCase {
            state: text(row, state).unwrap_or_default(),
            updated_at: text(row, updated).unwrap_or_default(),
            satisfaction: col("satisfaction").and_then(|i| match row.get(i) {
                Some(Value::Integer(n)) => Some(*n),
                _ => None,
            }),
        }))
}

/// Move the district record from `from` to `to` in the city loop, as the
/// city did; a record already moved (another gateway mirrored it) is fine.
async fn apply(
    gateway: &Gateway,
    entry: &Entry,
    from: &str,
    to: &str,
    city: &CityCase,
) -> Result<(), String> {
    let w = &entry.whistle;
    let district = gateway
        .sources
        .sources
        .iter()
        .find(|s| s.name() == w.district_source)
        .cloned()
        .ok_or_else(|| format!("no source `{}`", w.district_source))?;
    let command = Command::TransitionCase(Transition {
        id: w.case_id.clone(),
        division: w.division.clone(),
        from_state: from.into(),
        from_loop: "city".into(),
        to_state: to.into(),
        to_loop: "city".into(),
        step: Step {
            // One id per mirrored state: a repeat is the same step.
            id: format!("{}-{}", w.step_id, &to[..2]),
            state: to.into(),
            case_loop: "city".into(),
            at: crate::cases::ids::local_now(),
            by_level: "city".into(),
            note: Some(format!("市平台 {}", entry.city_case)),
        },
        satisfaction: (to == "evaluated").then_some(city.satisfaction).flatten(),
        linked_case: None,
    });
    match district.command(command, entry.id.clone()).await {
        Ok(_) => Ok(()),
        Err(PluginError::Command(CommandError::Conflict(_))) => {
            let scope = &w.division[..w.division.len().min(6)];
            let now = crate::cases::read::locate(&gateway.sources, scope, &w.case_id)
                .await
                .ok()
                .flatten()
                .map(|found| found.state)
                .unwrap_or_default();
            let at = |s: &str| CITY_ORDER.iter().position(|o| *o == s);
            match (at(&now), at(to)) {
                (Some(n), Some(t)) if n >= t => Ok(()),
                _ => Err(format!("the district record is `{now}`, not `{from}`")),
            }
        }
        Err(e) => Err(crate::redact::operator(&e)),
    }
}
