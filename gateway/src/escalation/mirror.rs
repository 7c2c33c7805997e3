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

use std::collections::{BTreeMap, HashMap};

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

/// The district of a whistled case: the feed is read per district.
fn district(entry: &Entry) -> String {
    let d = &entry.whistle.division;
    d[..d.len().min(6)].to_string()
}

/// Mirror every linked case that has moved on the platform.
pub async fn mirror_once(gateway: &Gateway) -> Result<(), String> {
    let Some(city) = gateway.whistle_source() else {
        return Ok(());
    };
    let rows = gateway.writes.mirroring(64).await?;
    // One read of the feed per district, from the earliest point any of
    // its cases needs (not one upstream call per case and tick).
    let mut since_by_district: BTreeMap<String, String> = BTreeMap::new();
    for (entry, _, since) in &rows {
        let earliest = since_by_district
            .entry(district(entry))
            .or_insert_with(|| since.clone());
        if *since < *earliest {
            *earliest = since.clone();
        }
    }
    let mut feed: HashMap<String, CityCase> = HashMap::new();
    for (district, since) in &since_by_district {
        feed.extend(read(&city, district, since).await?);
    }
    for (entry, mirrored, since) in rows {
        let Some(now) = feed.get(&entry.city_case) else {
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
            match apply(gateway, &entry, CITY_ORDER[next - 1], CITY_ORDER[next], now).await {
                Ok(()) => reached = next,
                Err(e) => {
                    tracing::warn!(case = %entry.whistle.case_id, to = CITY_ORDER[next], error = %e, "cannot mirror a city move; retrying");
                    break;
                }
            }
        }
        // Mirrored up to the city's state: the next read starts from its
        // time (also when nothing moved, so the feed stays short).
        let at = if reached == to {
            &now.updated_at
        } else {
            &since
        };
        if reached > from || *at != since {
            gateway
                .writes
                .mirrored(&entry.id, CITY_ORDER[reached], at)
                .await?;
        }
    }
    Ok(())
}

/// The city cases of `district` changed since `since`, by id, from the
/// feed (every page).
async fn read(
    city: &crate::sources::Source,
    district: &str,
    since: &str,
) -> Result<Vec<(String, CityCase)>, String> {
    let since = if since.is_empty() {
        "2000-01-01T00:00:00+08:00"
    } else {
        since
    };
    let mut query = Query {
        entity: "cases".into(),
        scope: vec![district.to_string()],
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
    let mut cases = Vec::new();
    loop {
        let page = city
            .query(query.clone(), how)
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
        for row in &page.rows {
            let Some(case) = text(row, id) else { continue };
            cases.push((
                case,
                CityCase {
                    state: text(row, state).unwrap_or_default(),
                    updated_at: text(row, updated).unwrap_or_default(),
                    satisfaction: col("satisfaction").and_then(|i| match row.get(i) {
                        Some(Value::Integer(n)) => Some(*n),
                        _ => None,
                    }),
                },
            ));
        }
        match page.next_cursor {
            Some(next) => query.cursor = Some(next),
            None => return Ok(cases),
        }
    }
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
        .get(&w.district_source)
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
            let now = super::saga::district_state(gateway, entry)
                .await
                .map(|(_, state)| state)
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
