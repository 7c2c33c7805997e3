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
