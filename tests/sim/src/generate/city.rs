//! What the city platform owns: cases escalated to the city loop, and the
//! party–masses service centres ("1 + 8 + N": a district centre, street
//! centres, community stations and more).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cases::timestamp;
use super::district::{District, Level};
use super::plans::DistrictPlan;

/// The 7-step closed loop, then escalation or closing.
pub const CASE_STATES: &[&str] = &[
    "discovered",
    "assessed",
    "whistled",
    "accepted",
    "reported_in",
    "feedback",
    "evaluated",
    "escalated",
    "closed",
];

#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub title: String,
    pub category: &'static str,
    pub loop_level: &'static str,
    pub state: &'static str,
    pub division: String,
    pub opened_at: String,
    pub updated_at: String,
    pub due_at: String,
    pub reporter_name: String,
    pub reporter_phone: String,
    pub departments: Vec<&'static str>,
    pub history: Vec<(&'static str, String, &'static str)>,
    pub satisfaction: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ServiceCenter {
    pub id: String,
    pub name: String,
    pub tier: &'static str,
    pub division: String,
    pub address: String,
    pub area_m2: i64,
    pub open_hours: &'static str,
}

const PROBLEMS: &[(&str, &str)] = &[
    ("楼道堆物清理", "环境卫生"),
    ("路灯损坏", "市政设施"),
    ("老旧小区加装电梯协调", "物业管理"),
    ("供暖温度不达标", "供暖"),
    ("下水道堵塞", "市政设施"),
    ("违章搭建", "城市管理"),
    ("邻里噪音纠纷", "邻里纠纷"),
    ("消防通道被占用", "安全隐患"),
    ("小区无物业管理", "物业管理"),
    ("道路破损", "市政设施"),
];
const DEPARTMENTS: &[&str] = &[
    "市住建局",
    "市城管局",
    "市市政公用事业局",
    "市供热公司",
    "市应急管理局",
    "市公安局",
];
const LEVELS_BY_STEP: &[&str] = &[
    "grid",
    "community",
    "street",
    "city",
    "city",
    "city",
    "city",
    "city",
    "city",
];

/// City-loop cases of a district, one per community at least.
pub fn cases(plan: &DistrictPlan, district: &District, seed: u64) -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xCA5E ^ plan.code.parse::<u64>().unwrap_or(0));
    let communities: Vec<&str> = district
        .divisions
        .iter()
        .filter(|d| d.level == Level::Community)
        .map(|d| d.code.as_str())
        .collect();
    let count = (communities.len() * 4).max(1);
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let division = communities[n % communities.len().max(1)].to_string();
        let (title, category) = PROBLEMS[rng.random_range(0..PROBLEMS.len())];
        let steps = rng.random_range(1..=CASE_STATES.len());
        let opened = rng.random_range(0..900);
        let mut history = Vec::new();
        // Working minutes since 2024-01-01 (600 a day): steps move forward.
        let mut at = opened * 600 + rng.random_range(0..300);
        for (i, state) in CASE_STATES.iter().take(steps).enumerate() {
            history.push((*state, timestamp(at), LEVELS_BY_STEP[i]));
            at += rng.random_range(30..1800);
        }
        let state = history.last().map_or("discovered", |h| h.0);
        out.push(Case {
            id: format!("{}-{:06}", plan.code, n + 1),
            title: title.to_string(),
            category,
            loop_level: "city",
            state,
            division,
            opened_at: history[0].1.clone(),
            updated_at: history.last().map(|h| h.1.clone()).unwrap_or_default(),
            due_at: timestamp((opened + 15) * 600),
            reporter_name: format!(
                "{}先生",
                ["王", "李", "张", "刘", "马", "白"][rng.random_range(0..6)]
            ),
            reporter_phone: format!("139{:08}", rng.random_range(0..100_000_000u32)),
            departments: (0..rng.random_range(1..3))
                .map(|_| DEPARTMENTS[rng.random_range(0..DEPARTMENTS.len())])
                .collect(),
            satisfaction: matches!(state, "evaluated" | "closed").then(|| rng.random_range(3..=5)),
            history,
        });
    }
    out
}

/// Service centres: the district's, each street's, each community's, then
/// grid-level stations up to the plan's count.
pub fn service_centers(plan: &DistrictPlan, district: &District) -> Vec<ServiceCenter> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<ServiceCenter>,
                name: String,
                tier: &'static str,
                division: &str,
                area: i64| {
        out.push(ServiceCenter {
            id: format!("{}-FWZX-{:03}", plan.code, out.len() + 1),
            address: format!("内蒙古自治区{}{}", district.name, name),
            name,
            tier,
            division: division.to_string(),
            area_m2: area,
            open_hours: "周一至周日 8:30-18:00",
        });
    };
    if plan.service_centers == 0 {
        return out;
    }
    push(
        &mut out,
        format!("{}党群服务中心", district.name),
        "district",
        &district.code,
        1200,
    );
    for d in district
        .divisions
        .iter()
        .filter(|d| d.level == Level::Street)
    {
        push(
            &mut out,
            format!("{}党群服务中心", d.name),
            "street",
            &d.code,
            600,
        );
    }
    for d in district
        .divisions
        .iter()
        .filter(|d| d.level == Level::Community)
    {
        push(
            &mut out,
            format!("{}党群服务站", d.name),
            "community",
            &d.code,
            300,
        );
    }
    let mut grids = district.grids.iter();
    while out.len() < plan.service_centers {
        let Some(g) = grids.next() else { break };
        push(
            &mut out,
            format!("{}党群服务点", g.name),
            "grid",
            &g.code,
            80,
        );
    }
    out.truncate(plan.service_centers);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::plans::HUIMIN;

    #[test]
    fn huimin_has_88_service_centers() {
        let d = District::generate(&HUIMIN, 1);
        let centers = service_centers(&HUIMIN, &d);
        assert_eq!(centers.len(), 88);
        assert_eq!(centers.iter().filter(|c| c.tier == "street").count(), 8);
    }

    #[test]
    fn cases_walk_the_loop_in_order() {
        let d = District::generate(&HUIMIN, 1);
        for case in cases(&HUIMIN, &d, 1) {
            let states: Vec<&str> = case.history.iter().map(|h| h.0).collect();
            assert_eq!(states, CASE_STATES[..states.len()].to_vec());
            assert!(case.updated_at >= case.opened_at);
        }
    }
}
