//! Cases a district handles itself: found in a grid, handled by the grid,
//! its community or its street (the three inner loops of Saihan's "four
//! closed loops"); each district database keeps them in its own shape.
//! Cases that reach the city loop live on the city platform (`city.rs`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::district::District;

/// One step of a case's history.
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique within the district (`<case id>.<n>`).
    pub id: String,
    pub state: &'static str,
    /// The loop handling the case after this step.
    pub loop_level: &'static str,
    pub at: String,
    /// The level of whoever took the step.
    pub by_level: &'static str,
    pub note: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DistrictCase {
    pub id: String,
    pub title: &'static str,
    pub category: &'static str,
    pub loop_level: &'static str,
    pub state: &'static str,
    /// The grid where the problem is (it stays there when the case rises).
    pub division: String,
    pub opened_at: String,
    pub updated_at: String,
    pub due_at: String,
    pub reporter_name: String,
    pub reporter_phone: String,
    pub satisfaction: Option<i64>,
    pub steps: Vec<Step>,
}

const PROBLEMS: &[(&str, &str)] = &[
    ("楼道堆物清理", "环境卫生"),
    ("单元门禁损坏", "物业管理"),
    ("邻里漏水纠纷", "邻里纠纷"),
    ("小区路灯不亮", "市政设施"),
    ("独居老人需要照护", "民生服务"),
    ("共享单车乱停放", "城市管理"),
    ("楼顶防水层破损", "物业管理"),
    ("垃圾清运不及时", "环境卫生"),
    ("电动车楼道充电", "安全隐患"),
    ("广场舞噪音扰民", "邻里纠纷"),
];

/// Local time in Inner Mongolia (UTC+8), as the districts record it.
pub fn timestamp(minute_of_era: i64) -> String {
    // Working minutes since 2024-01-01 (600 a day, from 08:00), on a
    // calendar of 12 × 28-day months: enough for test data.
    let (day, minute) = (minute_of_era / 600, minute_of_era % 600);
    let (year, rest) = (2024 + day / 336, day % 336);
    format!(
        "{year}-{:02}-{:02}T{:02}:{:02}:00+08:00",
        rest / 28 + 1,
        rest % 28 + 1,
        8 + minute / 60,
        minute % 60
    )
}

/// About one case per grid (at most 2,000), each walked some way along
/// the closed loop of the grid, then possibly its community and street.
/// Derived from the district alone, so a test can regenerate what a
/// database holds.
pub fn cases(district: &District) -> Vec<DistrictCase> {
    let grids: u64 = district.grids.len() as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(
        0x10_0b5 ^ grids.rotate_left(20) ^ district.code.parse::<u64>().unwrap_or(0),
    );
    let count = district.grids.len().min(2000);
    let mut out = Vec::with_capacity(count);
    for (n, grid) in district.grids.iter().take(count).enumerate() {
        let (title, category) = PROBLEMS[rng.random_range(0..PROBLEMS.len())];
        let id = format!("{}-D{:06}", district.code, n + 1);
        let opened = rng.random_range(0..900) * 600 + rng.random_range(0..300);
        let mut at = opened;
        let mut steps = Vec::new();
        let mut step = |state: &'static str, loop_level, by_level, note: Option<&str>, at: i64| {
            steps.push(Step {
                id: format!("{id}.{}", steps.len() + 1),
                state,
                loop_level,
                at: timestamp(at),
                by_level,
                note: note.map(str::to_string),
            });
        };
        step("discovered", "grid", "grid", Some("网格员巡查发现"), at);
        // How far up the case rises: most stay in the grid.
        let top = match rng.random_range(0..10) {
            0..=5 => 0,
            6..=8 => 1,
            _ => 2,
        };
        let loops = ["grid", "community", "street"];
        let mut length = rng.random_range(1..=8);
        let mut loop_level = "grid";
        'walk: for (i, l) in loops.iter().enumerate().take(top + 1) {
            if i > 0 {
                at += rng.random_range(30..900);
                step("escalated", l, loops[i - 1], Some("本级无法解决，上报"), at);
                loop_level = l;
            }
            at += rng.random_range(30..900);
            step("assessed", l, l, None, at);
            length -= 1;
            if length == 0 {
                break 'walk;
            }
        }
        if length > 0 {
            for state in ["accepted", "feedback", "evaluated", "closed"] {
                at += rng.random_range(30..1800);
                let note = (state == "feedback").then_some("已处理完毕");
                step(state, loop_level, loop_level, note, at);
                length -= 1;
                if length == 0 {
                    break;
                }
            }
        }
        let last = steps.last().map_or("discovered", |s| s.state);
        let satisfaction = steps
            .iter()
            .any(|s| s.state == "evaluated")
            .then(|| rng.random_range(2..=5));
        out.push(DistrictCase {
            title,
            category,
            loop_level,
            state: last,
            division: grid.code.clone(),
            opened_at: steps[0].at.clone(),
            updated_at: steps.last().map(|s| s.at.clone()).unwrap_or_default(),
            due_at: timestamp(opened + 7 * 600),
            reporter_name: format!(
                "{}女士",
                ["王", "李", "张", "刘", "马", "白", "其其格", "乌"][rng.random_range(0..8)]
            ),
            reporter_phone: format!("138{:08}", rng.random_range(0..100_000_000u32)),
            satisfaction,
            steps,
            id,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::plans::HUIMIN;

    #[test]
    fn cases_rise_only_through_escalation_and_keep_their_grid() {
        let d = District::generate(&HUIMIN, 1);
        let all = cases(&d);
        assert_eq!(all.len(), d.grids.len());
        let mut loops = std::collections::BTreeSet::new();
        for case in &all {
            assert!(d.grids.iter().any(|g| g.code == case.division));
            assert_eq!(case.steps[0].state, "discovered");
            assert_eq!(case.steps.last().map(|s| s.state), Some(case.state));
            let rises = case.steps.iter().filter(|s| s.state == "escalated").count();
            let expected = ["grid", "community", "street"][rises];
            assert_eq!(case.loop_level, expected, "{case:?}");
            assert!(case.updated_at >= case.opened_at);
            loops.insert(case.loop_level);
        }
        assert_eq!(loops.len(), 3, "every inner loop has cases");
    }
}
