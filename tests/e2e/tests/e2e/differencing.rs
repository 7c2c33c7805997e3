//! The differencing adversary: a statistics-only caller (a city) tries to
//! recover protected counts that are small (true count 1–4, published as
//! suppressed) by combining other published counts, over HTTP, with an
//! unlimited statistics budget — so what it recovers is what the counts
//! themselves give away, not what the budget stops.
//!
//! Target cells: members per community and ethnicity — all of them, the
//! men, the women — with a true count of 1–4, in Hohhot (1501) and Ulanqab
//! (1509). The attacks, each named:
//! - `repeated`: the same query again (and the same cell asked alone);
//! - `margin minus cells`: a community's total minus its published
//!   ethnicity cells;
//! - `hierarchy`: a street's count for the ethnicity minus its other
//!   communities' published counts;
//! - `overlapping filters`: margin-minus-cells of the other tables
//!   combined (everyone = men + women, men = everyone − women);
//! - `combined`: the mean of every estimate the attacker has for the cell.
//!
//! An estimate is rounded and clamped to 1–4 (the attacker is even told the
//! cell is not empty). The bound: for every attack, the share of targets
//! recovered exactly is no higher than guessing the most common small
//! count for every cell from the published value alone ("suppressed"),
//! plus two standard errors of that share.

use std::collections::{BTreeMap, HashMap};

use lianqiao_e2e::{ConfigDir, Upstreams, token};
use serde_json::Value;

type Cell = (String, String); // (division, key)

fn values(body: &Value) -> HashMap<Cell, Option<i64>> {
    body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|c| c["not_covered"] != true)
        .map(|c| {
            (
                (
                    c["division"].as_str().unwrap_or("").to_string(),
                    c["key"].as_str().unwrap_or("").to_string(),
                ),
                c["value"].as_i64(),
            )
        })
        .collect()
}

/// One table as the attacker sees it: members per community (margins),
/// per community and ethnicity (cells) and per street and ethnicity, all
/// under one filter.
struct Published {
    margins: HashMap<Cell, Option<i64>>,
    cells: HashMap<Cell, Option<i64>>,
    streets: HashMap<Cell, Option<i64>>,
}

impl Published {
    /// The community's total minus its other published cells.
    fn margin_minus_cells(&self, division: &str, key: &str) -> Option<i64> {
        minus_cells(
            self.margins
                .get(&(division.to_string(), String::new()))
                .copied()
                .flatten(),
            &self.cells,
            division,
            key,
        )
    }

    /// The street's count for the key minus the other communities' cells.
    fn hierarchy(&self, division: &str, key: &str) -> Option<i64> {
        let street = &division[..9];
        let siblings: HashMap<Cell, Option<i64>> = self
            .cells
            .iter()
            .filter(|((d, k), _)| d.starts_with(street) && k == key)
            .map(|((d, _), v)| ((d.clone(), String::new()), *v))
            .collect();
        minus_cells(
            self.streets
                .get(&(street.to_string(), key.to_string()))
                .copied()
                .flatten(),
            &siblings,
            division,
            "",
        )
    }
}

/// `total` minus the published cells of `division` other than `key`;
/// `None` when the total is itself suppressed.
fn minus_cells(
    total: Option<i64>,
    cells: &HashMap<Cell, Option<i64>>,
    division: &str,
    key: &str,
) -> Option<i64> {
    let others: i64 = cells
        .iter()
        .filter(|((d, k), _)| d == division && k != key)
        .filter_map(|(_, v)| *v)
        .sum();
    total.map(|t| t - others)
}

fn clamp(estimate: f64) -> i64 {
    (estimate.round() as i64).clamp(1, 4)
}

#[tokio::test]
async fn differencing_recovers_small_counts_no_better_than_guessing() {
    let up = Upstreams::start().await;
    // A fixed noise key: the run is deterministic (docs/policy.md gives the
    // spread over random keys).
    let dir = ConfigDir::new();
    std::fs::write(
        dir.dir.path().join("stats.key"),
        "differencing-adversary-fixed-key",
    )
    .unwrap();
    let gw = dir
        .edit_main("[statistics]\n", "[statistics]\nkey_file = \"stats.key\"\n")
        .with_huimin()
        .with_upstreams(&up)
        .start()
        .await;
    let mut targets: Vec<(Cell, i64)> = Vec::new();
    let mut estimates: BTreeMap<&str, Vec<Option<i64>>> = BTreeMap::new();
    let mut combined: Vec<Option<i64>> = Vec::new();
    // The unclamped derived values (for "all three", the triple).
    let mut raw: BTreeMap<&str, Vec<Option<i64>>> = BTreeMap::new();
    let mut repeated_same = true;
    // Three tables: everyone, men, women (the gender split is the
    // overlapping-filters attack's lever).
    const FILTERS: [&str; 3] = ["", "&gender=male", "&gender=female"];
    for city in ["1501", "1509"] {
        let stats = |query: &str, filter: &str| {
            format!("/v1/stats?metric=members.count&division={city}&{query}{filter}")
        };
        let attacker = token("city", city, &[]);
        let ask = |query: String| {
            let attacker = attacker.clone();
            let gw = &gw;
            async move {
                let (status, body) = gw.get_as(&attacker, "statistics", &query).await;
                assert_eq!(status, 200, "{query}: {body}");
                assert_eq!(body["policy"]["counts"], "protected", "{query}");
                values(&body)
            }
        };
        let mut tables = Vec::new();
        let mut truths = Vec::new();
        for filter in FILTERS {
            // The truth, from a principal that may see everything.
            let (status, truth) = gw
                .get(&stats("group_by=community&by=ethnicity", filter))
                .await;
            assert_eq!(status, 200, "{truth}");
            assert_eq!(truth["policy"]["counts"], "exact");
            truths.push(truth);
            let cells = ask(stats("group_by=community&by=ethnicity", filter)).await;
            repeated_same &= cells == ask(stats("group_by=community&by=ethnicity", filter)).await;
            tables.push(Published {
                margins: ask(stats("group_by=community", filter)).await,
                streets: ask(stats("group_by=street&by=ethnicity", filter)).await,
                cells,
            });
        }
        for (t, truth) in truths.iter().enumerate() {
            for cell in truth["data"].as_array().unwrap() {
                let Some(count) = cell["value"].as_i64().filter(|n| (1..5).contains(n)) else {
                    continue;
                };
                let division = cell["division"].as_str().unwrap().to_string();
                let key = cell["key"].as_str().unwrap_or("").to_string();
                let id = (division.clone(), key.clone());
                assert!(
                    matches!(tables[t].cells.get(&id), None | Some(None)),
                    "{id:?} (true {count}) is published as suppressed (or, like an empty cell, not at all)"
                );
                let margin = tables[t].margin_minus_cells(&division, &key);
                let hierarchy = tables[t].hierarchy(&division, &key);
                let m = |i: usize| tables[i].margin_minus_cells(&division, &key);
                // Everyone = men + women; men = everyone − women; and so on.
                let overlapping = match t {
                    0 => m(1).zip(m(2)).map(|(a, b)| a + b),
                    1 => m(0).zip(m(2)).map(|(a, b)| a - b),
                    _ => m(0).zip(m(1)).map(|(a, b)| a - b),
                };
                let all = [margin, hierarchy, overlapping];
                let known: Vec<f64> = all.iter().flatten().map(|v| *v as f64).collect();
                combined.push(
                    (!known.is_empty())
                        .then(|| clamp(known.iter().sum::<f64>() / known.len() as f64)),
                );
                for (name, estimate) in ["margin minus cells", "hierarchy", "overlapping filters"]
                    .into_iter()
                    .zip(all)
                {
                    estimates
                        .entry(name)
                        .or_default()
                        .push(estimate.map(|e| clamp(e as f64)));
                    raw.entry(name).or_default().push(estimate);
                }
                raw.entry("combined").or_default().push(
                    (!known.is_empty())
                        .then(|| (known.iter().sum::<f64>() / known.len() as f64).round() as i64),
                );
                targets.push((id, count));
            }
        }
    }
    assert!(repeated_same, "repeating a query returns the same cells");
    let n = targets.len();
    assert!(
        n >= 1000,
        "{n} target cells with true counts 1–4; want at least 1,000"
    );
    // Guessing from the published value alone: the most common small count.
    let mut histogram = [0usize; 5];
    for (_, count) in &targets {
        histogram[*count as usize] += 1;
    }
    let (mode, hits) = (1..5)
        .map(|v| (v, histogram[v]))
        .max_by_key(|(_, h)| *h)
        .unwrap();
    let baseline = hits as f64 / n as f64;
    let bound = baseline + 2.0 * (baseline * (1.0 - baseline) / n as f64).sqrt();
    estimates.insert("combined", combined);
    let mut report = format!(
        "{n} target cells (true 1: {}, 2: {}, 3: {}, 4: {}); guessing {mode} for every cell recovers {:.3}; bound {bound:.3}\n",
        histogram[1], histogram[2], histogram[3], histogram[4], baseline
    );
    report.push_str(&format!(
        "  repeated: every repeated query and re-asked cell identical → {baseline:.3}\n"
    ));
    let mut worst = ("", 0.0);
    let mut derivable_failures = Vec::new();
    let mut calibrated: Vec<(String, f64)> = Vec::new();
    for (name, guesses) in &estimates {
        let derivable = guesses.iter().filter(|g| g.is_some()).count();
        // Where an attack cannot derive an estimate, the attacker guesses.
        let exact = targets
            .iter()
            .zip(guesses)
            .filter(|((_, truth), guess)| guess.unwrap_or(mode as i64) == *truth)
            .count();
        let rate = exact as f64 / n as f64;
        let on_derivable = targets
            .iter()
            .zip(guesses)
            .filter(|(_, g)| g.is_some())
            .filter(|((_, truth), g)| **g == Some(*truth))
            .count();
        // The same comparison on the cells the attack could derive alone.
        let mut sub = [0usize; 5];
        for ((_, truth), _) in targets.iter().zip(guesses).filter(|(_, g)| g.is_some()) {
            sub[*truth as usize] += 1;
        }
        let sub_baseline = sub.iter().max().copied().unwrap_or(0) as f64 / derivable.max(1) as f64;
        let sub_bound = sub_baseline
            + 2.0 * (sub_baseline * (1.0 - sub_baseline) / derivable.max(1) as f64).sqrt();
        let sub_rate = on_derivable as f64 / derivable.max(1) as f64;
        report.push_str(&format!(
            "  {name}: derivable for {derivable} cells, exact on {on_derivable} ({sub_rate:.3}; guessing there: {sub_baseline:.3}, bound {sub_bound:.3}); with guesses elsewhere {rate:.3}\n"
        ));
        if rate > worst.1 {
            worst = (name, rate);
        }
        if derivable >= 100 && sub_rate > sub_bound {
            derivable_failures.push(format!("{name}: {sub_rate:.3} > {sub_bound:.3}"));
        }
    }
    // A calibrated attacker: it learns, from half the cells with their
    // true counts, which true count is most common for each value an
    // attack derives, and applies that rule to the other half (and the
    // other way round). The strongest use of these attacks short of
    // knowing the answer.
    for (name, values) in &raw {
        let fold = |learn: usize| {
            let mut by_value: HashMap<Option<i64>, [usize; 5]> = HashMap::new();
            let mut overall = [0usize; 5];
            for (i, ((_, truth), v)) in targets.iter().zip(values).enumerate() {
                if i % 2 == learn {
                    by_value.entry(*v).or_default()[*truth as usize] += 1;
                    overall[*truth as usize] += 1;
                }
            }
            let mode_of = |h: &[usize; 5]| (1..5).max_by_key(|v| h[*v]).unwrap_or(1) as i64;
            let fallback = mode_of(&overall);
            targets
                .iter()
                .zip(values)
                .enumerate()
                .filter(|(i, _)| i % 2 != learn)
                .filter(|(_, ((_, truth), v))| by_value.get(v).map_or(fallback, mode_of) == *truth)
                .count()
        };
        let rate = (fold(0) + fold(1)) as f64 / n as f64;
        report.push_str(&format!("  calibrated on `{name}`: {rate:.3}\n"));
        calibrated.push((name.to_string(), rate));
    }
    println!("{report}");
    for (name, rate) in &calibrated {
        assert!(
            *rate <= bound,
            "a calibrated attacker on `{name}` recovers {rate:.3} > {bound:.3}:\n{report}"
        );
    }
    assert!(
        derivable_failures.is_empty(),
        "on the cells they can derive: {derivable_failures:?}\n{report}"
    );
    assert!(
        worst.1 <= bound,
        "`{}` recovers {:.3} > {bound:.3}:\n{report}",
        worst.0,
        worst.1
    );
}

// ---------------------------------------------------------------------------
// Reformulations: the same records asked for in other words.
//
// Protected values are drawn from the records a cell counts (their record
// digest, contract 0.3), not from the query's words. Before, each
// reformulation of one record set was a fresh draw of noise, and averaging
// 80 of them recovered suppressed cells exactly (issue: "protected counts
// averaged over reformulations"). The reformulations below — padding an
// `[in]` list with categories that are empty in the whole district,
// tautological filters (a field `[in]` all its values), permuted lists,
// the cell asked alone, in a `by` table or in a `group_by` table — all
// count the same records.
// ---------------------------------------------------------------------------

use lianqiao_gateway::model::ETHNIC_GROUPS;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The seed of the adversaries' choices: `LIANQIAO_TEST_SEED`, or fixed.
fn seed() -> u64 {
    let seed = std::env::var("LIANQIAO_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261207);
    println!("adversary seed {seed} (set LIANQIAO_TEST_SEED to replay another)");
    seed
}

/// A gateway over Huimin and the simulators with a fixed noise key and an
/// unlimited budget: what the adversaries recover is what the values give
/// away, not what the budget stops.
async fn adversary_gateway(up: &Upstreams) -> lianqiao_e2e::TestGateway {
    let dir = ConfigDir::new();
    std::fs::write(
        dir.dir.path().join("stats.key"),
        "reformulation-adversary-key",
    )
    .unwrap();
    dir.edit_main("[statistics]\n", "[statistics]\nkey_file = \"stats.key\"\n")
        .with_huimin()
        .with_upstreams(up)
        .start()
        .await
}

/// Tautologies: filters that admit every value of a field, in any order.
const TAUTOLOGIES: &[&str] = &[
    "",
    "&gender[in]=male,female",
    "&gender[in]=female,male",
    "&status[in]=regular,in_service_registered,retired",
    "&status[in]=retired,regular,in_service_registered",
    "&status[in]=in_service_registered,retired,regular",
    "&gender[in]=female,male&status[in]=regular,retired,in_service_registered",
];

/// Phrasings of "members of `division` whose ethnicity is in `base`":
/// `base` permuted and padded with `empty` categories at every position,
/// each with every tautology; `want` distinct queries at most. With
/// `margin`, `base` is every category present, and the plain count (no
/// ethnicity filter) is one more phrasing.
fn reformulations(
    division: &str,
    base: &[&str],
    margin: bool,
    empty: &[&str],
    rng: &mut impl Rng,
    want: usize,
) -> Vec<String> {
    let prefix = format!("/v1/stats?metric=members.count&division={division}");
    let mut out: Vec<String> = Vec::new();
    fn push(out: &mut Vec<String>, q: String) {
        if !out.contains(&q) {
            out.push(q);
        }
    }
    for t in TAUTOLOGIES {
        if margin {
            push(&mut out, format!("{prefix}{t}"));
        }
        match base {
            [] => {}
            [one] => {
                push(&mut out, format!("{prefix}&ethnicity={one}{t}"));
                push(&mut out, format!("{prefix}&ethnicity[in]={one}{t}"));
            }
            _ => push(
                &mut out,
                format!("{prefix}&ethnicity[in]={}{t}", base.join(",")),
            ),
        }
    }
    let mut padded = 0;
    while out.len() < want && padded < 10 * want {
        padded += 1;
        let mut list: Vec<&str> = base.to_vec();
        // One to three empty categories, anywhere in a shuffled list.
        for _ in 0..rng.random_range(1..=3) {
            list.push(empty[rng.random_range(0..empty.len())]);
        }
        list.sort();
        list.dedup();
        list.shuffle(rng);
        let t = TAUTOLOGIES[rng.random_range(0..TAUTOLOGIES.len())];
        push(
            &mut out,
            format!("{prefix}&ethnicity[in]={}{t}", list.join(",")),
        );
    }
    out.truncate(want);
    out
}

/// The one value a statistics answer publishes (its only cell), or `None`
/// when suppressed; panics on anything but one cell.
fn only_value(query: &str, body: &Value) -> Option<i64> {
    let cells = values(body);
    assert_eq!(cells.len(), 1, "{query}: {body}");
    cells.into_values().next().flatten()
}

/// Ask `query` as `token`; the body, which must be protected.
async fn protected(gw: &lianqiao_e2e::TestGateway, token: &str, query: &str) -> Value {
    let (status, body) = gw.get_as(token, "statistics", query).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["policy"]["counts"], "protected", "{query}");
    body
}

/// Ethnicities with members in `district` and those without, from the
/// exact table (the attacker learns the same from the district's table:
/// its cell count equals the number of groups present).
async fn present_and_empty(
    gw: &lianqiao_e2e::TestGateway,
    district: &str,
) -> (Vec<String>, Vec<&'static str>) {
    let (status, truth) = gw
        .get(&format!(
            "/v1/stats?metric=members.count&division={district}&by=ethnicity"
        ))
        .await;
    assert_eq!(status, 200, "{truth}");
    assert_eq!(truth["policy"]["counts"], "exact");
    let mut present: Vec<(i64, String)> = truth["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| Some((c["value"].as_i64()?, c["key"].as_str()?.to_string())))
        .filter(|(n, _)| *n > 0)
        .collect();
    present.sort_by(|a, b| b.cmp(a));
    let present: Vec<String> = present.into_iter().map(|(_, k)| k).collect();
    let empty = ETHNIC_GROUPS
        .iter()
        .copied()
        .filter(|e| !present.iter().any(|p| p == e))
        .collect();
    (present, empty)
}

#[tokio::test]
async fn a_hundred_reformulations_of_one_record_set_publish_one_value() {
    let up = Upstreams::start().await;
    let gw = adversary_gateway(&up).await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed());
    let (present, empty) = present_and_empty(&gw, "150103").await;
    assert!(present.len() >= 2 && empty.len() >= 10, "{present:?}");
    // Levels: the district, a street, two communities.
    let (_, communities) = gw
        .get("/v1/stats?metric=members.count&division=150103&group_by=community")
        .await;
    let mut busy: Vec<(i64, String)> = communities["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| Some((c["value"].as_i64()?, c["division"].as_str()?.to_string())))
        .collect();
    busy.sort_by(|a, b| b.cmp(a));
    let community = busy[0].1.clone();
    let small = busy[busy.len() / 2].1.clone();
    let street = community[..9].to_string();
    let (p0, p1) = (present[0].as_str(), present[1].as_str());
    let every: Vec<&str> = present.iter().map(String::as_str).collect();
    let mut checked = 0;
    let mut published = 0;
    for (level, division) in [("region", "15"), ("city", "1501")] {
        let attacker = token(level, division, &[]);
        for (target, base, margin) in [
            ("150103", every.clone(), true),
            ("150103", vec![p0], false),
            (street.as_str(), vec![p0, p1], false),
            (community.as_str(), every.clone(), true),
            (community.as_str(), vec![p1], false),
            (small.as_str(), vec![p0, p1], false),
        ] {
            let phrasings = reformulations(target, &base, margin, &empty, &mut rng, 100);
            assert_eq!(phrasings.len(), 100, "{target} {base:?}");
            let first = only_value(
                &phrasings[0],
                &protected(&gw, &attacker, &phrasings[0]).await,
            );
            for q in &phrasings[1..] {
                let v = only_value(q, &protected(&gw, &attacker, q).await);
                assert_eq!(
                    v, first,
                    "as {level}: `{q}` counts the same records as `{}`",
                    phrasings[0]
                );
            }
            // The same cell in a `by` table and in a parent's `group_by`
            // table (for one category).
            if let [one] = base.as_slice() {
                for t in TAUTOLOGIES {
                    let q =
                        format!("/v1/stats?metric=members.count&division={target}&by=ethnicity{t}");
                    let table = values(&protected(&gw, &attacker, &q).await);
                    // Without `group_by`, cells name no division.
                    let cell = table.get(&(String::new(), one.to_string())).copied();
                    assert_eq!(cell.flatten(), first, "{q}");
                }
                if target.len() == 12 {
                    let q = format!(
                        "/v1/stats?metric=members.count&division={}&group_by=community&ethnicity={one}",
                        &target[..9]
                    );
                    let table = values(&protected(&gw, &attacker, &q).await);
                    let cell = table.get(&(target.to_string(), String::new())).copied();
                    assert_eq!(cell.flatten(), first, "{q}");
                }
            }
            checked += 1;
            published += usize::from(first.is_some());
        }
    }
    assert_eq!(checked, 12);
    assert!(
        published >= 8,
        "most of these cells are large enough to publish"
    );
}

/// A suppressed target: members of ethnicity `key` in `community` (true
/// count 1–4), and the largest category there (the attacker's base).
struct Target {
    community: String,
    key: String,
    truth: i64,
    base: String,
}

/// Targets in `city`, from the exact table: cells with 1–4 members whose
/// community has a category of at least 20 to hide them in.
async fn targets(gw: &lianqiao_e2e::TestGateway, city: &str) -> Vec<Target> {
    let (status, truth) = gw
        .get(&format!(
            "/v1/stats?metric=members.count&division={city}&group_by=community&by=ethnicity"
        ))
        .await;
    assert_eq!(status, 200, "{truth}");
    let mut by_community: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for c in truth["data"].as_array().unwrap() {
        if let (Some(d), Some(k), Some(v)) = (
            c["division"].as_str(),
            c["key"].as_str(),
            c["value"].as_i64(),
        ) {
            by_community
                .entry(d.to_string())
                .or_default()
                .push((v, k.to_string()));
        }
    }
    let mut out = Vec::new();
    for (community, mut cells) in by_community {
        cells.sort_by(|a, b| b.cmp(a));
        let Some((largest, base)) = cells.first().cloned() else {
            continue;
        };
        if largest < 20 {
            continue;
        }
        for (v, key) in &cells {
            if (1..5).contains(v) {
                out.push(Target {
                    community: community.clone(),
                    key: key.clone(),
                    truth: *v,
                    base: base.clone(),
                });
            }
        }
    }
    out
}

/// What one attack recovered: its estimates, per target.
struct Attack {
    name: &'static str,
    estimates: Vec<Option<f64>>,
}

#[tokio::test]
async fn reformulating_splitting_and_overlapping_adversaries_recover_no_better_than_guessing() {
    let up = Upstreams::start().await;
    let gw = adversary_gateway(&up).await;
    let seed = seed();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut report = String::new();
    for (level, division, cities) in [
        ("city", "1501", vec!["1501"]),
        ("region", "15", vec!["1501", "1509"]),
    ] {
        let attacker = token(level, division, &[]);
        let mut all: Vec<Target> = Vec::new();
        for city in &cities {
            all.extend(targets(&gw, city).await);
        }
        all.shuffle(&mut rng);
        all.truncate(90);
        let n = all.len();
        assert!(n >= 60, "as {level}: {n} targets with a true count of 1–4");
        // Categories empty in every district the targets are in.
        let mut empty: Vec<&str> = ETHNIC_GROUPS.to_vec();
        for city in &cities {
            let (_, districts) = gw
                .get(&format!(
                    "/v1/stats?metric=members.count&division={city}&group_by=district"
                ))
                .await;
            for d in districts["data"].as_array().unwrap() {
                if let Some(d) = d["division"].as_str() {
                    let (_, none) = present_and_empty(&gw, d).await;
                    empty.retain(|e| none.contains(e));
                }
            }
        }
        assert!(empty.len() >= 5, "{empty:?}");
        let ask = |q: String| {
            let attacker = attacker.clone();
            let gw = &gw;
            async move { only_value(&q, &protected(gw, &attacker, &q).await) }
        };
        let mut attacks = vec![
            Attack {
                name: "union minus part, 1 phrasing",
                estimates: vec![],
            },
            Attack {
                name: "union minus part, mean of 12 phrasings (padding, tautologies, permutations)",
                estimates: vec![],
            },
            Attack {
                name: "split by gender, parts summed",
                estimates: vec![],
            },
            Attack {
                name: "split by status, parts summed",
                estimates: vec![],
            },
            Attack {
                name: "union minus part across overlapping filters",
                estimates: vec![],
            },
        ];
        for t in &all {
            let both = [t.base.as_str(), t.key.as_str()];
            let base = [t.base.as_str()];
            let unions = reformulations(&t.community, &both, false, &empty, &mut rng, 12);
            let parts = reformulations(&t.community, &base, false, &empty, &mut rng, 12);
            let mut u = Vec::new();
            for q in &unions {
                u.push(ask(q.clone()).await);
            }
            let mut p = Vec::new();
            for q in &parts {
                p.push(ask(q.clone()).await);
            }
            let mean = |xs: &[Option<i64>]| -> Option<f64> {
                let known: Vec<i64> = xs.iter().flatten().copied().collect();
                (!known.is_empty()).then(|| known.iter().sum::<i64>() as f64 / known.len() as f64)
            };
            let one = u[0].zip(p[0]).map(|(a, b)| (a - b) as f64);
            let many = mean(&u).zip(mean(&p)).map(|(a, b)| a - b);
            // The bound "does not shrink with reformulations", exactly:
            // every phrasing of a record set publishes one value.
            assert!(
                u.iter().all(|v| *v == u[0]) && p.iter().all(|v| *v == p[0]),
                "as {level}: {} {}: {u:?} {p:?}",
                t.community,
                t.key
            );
            attacks[0].estimates.push(one);
            attacks[1].estimates.push(many);
            // Splitting the union and the part by every value of another
            // groupable field and summing the parts.
            for (i, (field, vals)) in [
                ("gender", &["male", "female"][..]),
                (
                    "status",
                    &["regular", "in_service_registered", "retired"][..],
                ),
            ]
            .into_iter()
            .enumerate()
            {
                let mut sum: Option<i64> = Some(0);
                for v in vals {
                    let q = |list: &str| {
                        format!(
                            "/v1/stats?metric=members.count&division={}&ethnicity[in]={list}&{field}={v}",
                            t.community
                        )
                    };
                    let (a, b) = (ask(q(&both.join(","))).await, ask(q(&t.base)).await);
                    sum = sum.zip(a.zip(b)).map(|(s, (a, b))| s + a - b);
                }
                attacks[2 + i].estimates.push(sum.map(|s| s as f64));
            }
            // The union and the part through overlapping filters: the whole
            // union minus the part's men and women, and the union's men and
            // women minus the whole part; their mean.
            let q = |list: &str, extra: &str| {
                format!(
                    "/v1/stats?metric=members.count&division={}&ethnicity[in]={list}{extra}",
                    t.community
                )
            };
            let (um, uf) = (
                ask(q(&both.join(","), "&gender=male")).await,
                ask(q(&both.join(","), "&gender=female")).await,
            );
            let (pm, pf) = (
                ask(q(&t.base, "&gender=male")).await,
                ask(q(&t.base, "&gender=female")).await,
            );
            let e1 = u[0].zip(pm.zip(pf)).map(|(a, (m, f))| (a - m - f) as f64);
            let e2 = um.zip(uf).zip(p[0]).map(|((m, f), b)| (m + f - b) as f64);
            attacks[4].estimates.push(
                mean(&[e1.map(|e| e.round() as i64), e2.map(|e| e.round() as i64)])
                    .or(e1)
                    .or(e2),
            );
        }
        // Guessing from "suppressed" alone: the most common small count.
        let mut histogram = [0usize; 5];
        for t in &all {
            histogram[t.truth as usize] += 1;
        }
        let (mode, hits) = (1..5)
            .map(|v| (v, histogram[v]))
            .max_by_key(|(_, h)| *h)
            .unwrap();
        let baseline = hits as f64 / n as f64;
        let bound = baseline + 2.0 * (baseline * (1.0 - baseline) / n as f64).sqrt();
        report.push_str(&format!(
            "as {level}: {n} targets (true 1: {}, 2: {}, 3: {}, 4: {}); guessing {mode} recovers {baseline:.3}; bound {bound:.3}\n",
            histogram[1], histogram[2], histogram[3], histogram[4]
        ));
        let mut errors = Vec::new();
        for attack in &attacks {
            let exact = all
                .iter()
                .zip(&attack.estimates)
                .filter(|(t, e)| e.map_or(mode as i64, clamp) == t.truth)
                .count();
            let derivable: Vec<f64> = all
                .iter()
                .zip(&attack.estimates)
                .filter_map(|(t, e)| e.map(|e| (e - t.truth as f64).abs()))
                .collect();
            let mae = derivable.iter().sum::<f64>() / derivable.len().max(1) as f64;
            let rate = exact as f64 / n as f64;
            report.push_str(&format!(
                "  {}: derivable for {}, mean absolute error {mae:.2}, exact {rate:.3}\n",
                attack.name,
                derivable.len()
            ));
            errors.push((attack.name, rate, mae));
        }
        // Twelve phrasings per side teach exactly what one does.
        assert_eq!(attacks[0].estimates, attacks[1].estimates, "{report}");
        for (name, rate, _) in &errors {
            assert!(
                *rate <= bound,
                "as {level}, `{name}` recovers {rate:.3} > {bound:.3}:\n{report}"
            );
        }
    }
    println!("{report}");
}
