//! People and organizations of a district: party organizations, party
//! members (with residence, the "three households" and double
//! registration), and grid staff with the "four heads". The party-link
//! simulator serves the organizations and members; district databases keep
//! residence, roles and staff.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::district::{District, Level};
use super::idcard;
use super::names::{
    ETHNICITIES, FUNCTIONAL_BRANCHES, GIVEN_CHARS, HAN_SURNAMES, HUI_SURNAMES, MONGOLIAN_NAMES,
};
use super::plans::DistrictPlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgKind {
    /// Street party working committee or community party committee.
    Committee,
    /// Grid party branch.
    Branch,
    /// Building party group.
    Group,
    Functional,
    RedProperty,
}

impl OrgKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgKind::Committee => "committee",
            OrgKind::Branch => "branch",
            OrgKind::Group => "group",
            OrgKind::Functional => "functional",
            OrgKind::RedProperty => "red_property",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PartyOrg {
    pub id: String,
    pub name: String,
    pub kind: OrgKind,
    pub parent: Option<String>,
    pub division: String,
    pub secretary_name: String,
    pub founded_on: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HouseholdRole {
    Central,
    Bastion,
    Vanguard,
}

impl HouseholdRole {
    pub fn as_str(self) -> &'static str {
        match self {
            HouseholdRole::Central => "central",
            HouseholdRole::Bastion => "bastion",
            HouseholdRole::Vanguard => "vanguard",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Regular,
    InServiceRegistered,
    Retired,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Regular => "regular",
            MemberStatus::InServiceRegistered => "in_service_registered",
            MemberStatus::Retired => "retired",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    /// The party-link system's own id.
    pub id: String,
    pub name: String,
    pub male: bool,
    pub ethnicity: &'static str,
    pub birth_date: String,
    pub id_number: String,
    pub phone: String,
    pub org: String,
    pub joined_on: String,
    pub status: MemberStatus,
    pub household_role: Option<HouseholdRole>,
    /// Residence: the finest grid, the building and unit when known.
    pub grid: String,
    pub building: Option<String>,
    pub unit: Option<String>,
    /// Double-registration post (e.g. 楼栋长) of an in-service member.
    pub post: Option<&'static str>,
    /// Address as the party-link system keeps it.
    pub address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerRole {
    GridHead,
    CompoundHead,
    BuildingHead,
    UnitHead,
}

impl WorkerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerRole::GridHead => "grid_head",
            WorkerRole::CompoundHead => "compound_head",
            WorkerRole::BuildingHead => "building_head",
            WorkerRole::UnitHead => "unit_head",
        }
    }
}

/// One of the "four heads": who, for which grid/compound/building/unit.
#[derive(Debug, Clone)]
pub struct Head {
    pub id: String,
    pub name: String,
    pub male: bool,
    pub phone: String,
    pub role: WorkerRole,
    /// The grid the post sits in (for building and unit heads, the
    /// building's grid).
    pub grid: String,
    /// The compound, building or unit code the post is for.
    pub post_of: String,
    pub is_party_member: bool,
    pub since: String,
}

#[derive(Debug, Clone, Default)]
pub struct People {
    pub orgs: Vec<PartyOrg>,
    pub members: Vec<Member>,
    pub heads: Vec<Head>,
}

/// A name, sex and ethnicity drawn together (Mongolian names for
/// Mongolians, Hui surnames for Hui).
fn person(rng: &mut ChaCha8Rng) -> (String, bool, &'static str) {
    let roll = rng.random_range(0..1000);
    let mut acc = 0;
    let mut ethnicity = "汉族";
    for (name, share) in ETHNICITIES {
        acc += share;
        if roll < acc {
            ethnicity = name;
            break;
        }
    }
    let male = rng.random_bool(0.55);
    let given = |rng: &mut ChaCha8Rng| {
        let n = if rng.random_bool(0.6) { 2 } else { 1 };
        (0..n)
            .map(|_| GIVEN_CHARS[rng.random_range(0..GIVEN_CHARS.len())])
            .collect::<String>()
    };
    let name = match ethnicity {
        "蒙古族" => MONGOLIAN_NAMES[rng.random_range(0..MONGOLIAN_NAMES.len())].to_string(),
        "回族" => format!(
            "{}{}",
            HUI_SURNAMES[rng.random_range(0..HUI_SURNAMES.len())],
            given(rng)
        ),
        _ => format!(
            "{}{}",
            HAN_SURNAMES[rng.random_range(0..HAN_SURNAMES.len())],
            given(rng)
        ),
    };
    (name, male, ethnicity)
}

fn phone(rng: &mut ChaCha8Rng) -> String {
    const PREFIXES: &[&str] = &[
        "134", "135", "138", "139", "150", "151", "155", "158", "176", "186", "189",
    ];
    format!(
        "{}{:08}",
        PREFIXES[rng.random_range(0..PREFIXES.len())],
        rng.random_range(0..100_000_000u32)
    )
}

fn date(rng: &mut ChaCha8Rng, years: std::ops::Range<u32>) -> (u32, u32, u32) {
    (
        rng.random_range(years),
        rng.random_range(1..13),
        rng.random_range(1..29),
    )
}

impl People {
    pub fn generate(plan: &DistrictPlan, district: &District, seed: u64) -> People {
        let mut rng = ChaCha8Rng::seed_from_u64(
            seed.wrapping_mul(31) ^ plan.code.parse::<u64>().unwrap_or(0),
        );
        let mut orgs = Vec::new();
        let mut next_org = 0usize;
        let mut org_id = |kind: &str| {
            next_org += 1;
            format!("{}-{kind}-{next_org:04}", plan.code)
        };
        let founded = |rng: &mut ChaCha8Rng| {
            let (y, m, d) = date(rng, 1990..2023);
            format!("{y}-{m:02}-{d:02}")
        };
        if plan.party_orgs == 0 {
            return People::default();
        }

        // Street working committees and community committees.
        let mut committee_of = std::collections::HashMap::new();
        for d in district
            .divisions
            .iter()
            .filter(|d| matches!(d.level, Level::Street | Level::Community))
        {
            let (secretary, _, _) = person(&mut rng);
            let parent = d.parent.as_ref().and_then(|p| committee_of.get(p).cloned());
            let id = org_id("DW");
            committee_of.insert(d.code.clone(), id.clone());
            orgs.push(PartyOrg {
                id,
                name: if d.level == Level::Street {
                    format!("{}党工委", d.name)
                } else {
                    format!("{}党委", d.name)
                },
                kind: OrgKind::Committee,
                parent,
                division: d.code.clone(),
                secretary_name: secretary,
                founded_on: founded(&mut rng),
            });
        }
        // Grid branches carry the ids the district database records.
        for g in district.grids.iter().filter(|g| g.party_branch.is_some()) {
            let (secretary, _, _) = person(&mut rng);
            orgs.push(PartyOrg {
                id: g.party_branch.clone().unwrap_or_default(),
                name: format!("{}党支部", g.name),
                kind: OrgKind::Branch,
                parent: committee_of.get(&g.community).cloned(),
                division: g.code.clone(),
                secretary_name: secretary,
                founded_on: founded(&mut rng),
            });
        }
        // The rest: building groups, functional and red-property branches.
        let rest = plan.party_orgs.saturating_sub(orgs.len());
        let (groups, functional) = (rest * 2 / 3, rest / 6);
        let red = rest - groups - functional;
        let branch_of = |code: &str| {
            district
                .grids
                .iter()
                .filter(|g| g.party_branch.is_some() && code.starts_with(&g.code))
                .max_by_key(|g| g.code.len())
                .and_then(|g| g.party_branch.clone())
        };
        let mut buildings: Vec<&super::Building> = district.buildings.iter().collect();
        buildings.shuffle(&mut rng);
        for b in buildings.iter().take(groups) {
            let (secretary, _, _) = person(&mut rng);
            let community = &b.code[..12.min(b.code.len())];
            orgs.push(PartyOrg {
                id: org_id("DXZ"),
                name: format!("{}党小组", b.name),
                kind: OrgKind::Group,
                parent: branch_of(&b.grid).or_else(|| committee_of.get(community).cloned()),
                division: b.grid.clone(),
                secretary_name: secretary,
                founded_on: founded(&mut rng),
            });
        }
        let communities: Vec<&super::Division> = district
            .divisions
            .iter()
            .filter(|d| d.level == Level::Community)
            .collect();
        for k in 0..functional {
            let c = communities[k % communities.len()];
            let (secretary, _, _) = person(&mut rng);
            orgs.push(PartyOrg {
                id: org_id("GNZ"),
                name: format!(
                    "{}{}功能型党支部",
                    c.name,
                    FUNCTIONAL_BRANCHES[k % FUNCTIONAL_BRANCHES.len()]
                ),
                kind: OrgKind::Functional,
                parent: committee_of.get(&c.code).cloned(),
                division: c.code.clone(),
                secretary_name: secretary,
                founded_on: founded(&mut rng),
            });
        }
        for compound in district.compounds.iter().filter(|c| !c.is_old).take(red) {
            let (secretary, _, _) = person(&mut rng);
            orgs.push(PartyOrg {
                id: org_id("HWY"),
                name: format!("{}红色物业党支部", compound.name),
                kind: OrgKind::RedProperty,
                parent: committee_of.get(&compound.community).cloned(),
                division: compound.community.clone(),
                secretary_name: secretary,
                founded_on: founded(&mut rng),
            });
        }

        // Members: most in grid branches and building groups.
        let member_orgs: Vec<&PartyOrg> = orgs
            .iter()
            .filter(|o| !(o.kind == OrgKind::Committee && o.division.len() == 9))
            .collect();
        let units_by_building = {
            let mut map: std::collections::HashMap<&str, Vec<&str>> =
                std::collections::HashMap::new();
            for u in &district.units {
                map.entry(u.building.as_str())
                    .or_default()
                    .push(u.code.as_str());
            }
            map
        };
        let finest_grid = |code: &str| {
            district
                .grids
                .iter()
                .filter(|g| code.starts_with(&g.code) || g.code.starts_with(code))
                .max_by_key(|g| g.code.len())
                .map(|g| g.code.clone())
        };
        let mut members = Vec::with_capacity(plan.party_members);
        let mut id_numbers = std::collections::HashSet::new();
        for n in 0..plan.party_members {
            let org = member_orgs
                [(n * 7919 + rng.random_range(0..member_orgs.len())) % member_orgs.len()];
            // A home inside the organization's division.
            let candidates: Vec<&&super::Building> = buildings
                .iter()
                .filter(|b| b.grid.starts_with(&org.division) || b.code.starts_with(&org.division))
                .take(40)
                .collect();
            let building = candidates
                .get(rng.random_range(0..candidates.len().max(1)))
                .map(|b| **b);
            let unit = building.and_then(|b| {
                units_by_building
                    .get(b.code.as_str())
                    .and_then(|u| u.get(rng.random_range(0..u.len())).copied())
            });
            let grid = building
                .map(|b| b.grid.clone())
                .or_else(|| finest_grid(&org.division))
                .unwrap_or_else(|| org.division.clone());
            let (name, male, ethnicity) = person(&mut rng);
            let (by, bm, bd) = date(&mut rng, 1940..2004);
            let birth = format!("{by}{bm:02}{bd:02}");
            let joined_year = (by + 18 + rng.random_range(0..30)).min(2024);
            let (_, jm, jd) = date(&mut rng, 0..1);
            let status = if by < 1962 {
                MemberStatus::Retired
            } else {
                MemberStatus::Regular
            };
            let address = match (building, unit) {
                (Some(b), Some(u)) => format!("{}{}{}", district.name, b.name, unit_name(u)),
                _ => format!("{}{}", district.name, org.name),
            };
            members.push(Member {
                id: format!("DY{}{:06}", plan.code, n + 1),
                name,
                male,
                ethnicity,
                birth_date: format!("{by}-{bm:02}-{bd:02}"),
                id_number: {
                    // Same birthday and sequence would collide: take the next sequence.
                    let mut seq = n as u32;
                    loop {
                        let id = idcard::id_number(plan.code, &birth, seq, male);
                        if id_numbers.insert(id.clone()) {
                            break id;
                        }
                        seq += 1;
                    }
                },
                phone: phone(&mut rng),
                org: org.id.clone(),
                joined_on: format!("{joined_year}-{jm:02}-{jd:02}"),
                status,
                household_role: None,
                grid,
                building: building.map(|b| b.code.clone()),
                unit: unit.map(str::to_string),
                post: None,
                address,
            });
        }
        // Double registration: working-age members register where they live.
        let mut working: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].status == MemberStatus::Regular)
            .collect();
        working.shuffle(&mut rng);
        const POSTS: &[&str] = &["楼栋长", "单元长", "志愿者", "网格员助理", "调解员"];
        for (k, &i) in working.iter().take(plan.in_service_registered).enumerate() {
            members[i].status = MemberStatus::InServiceRegistered;
            members[i].post = Some(POSTS[k % POSTS.len()]);
        }
        // Three households: central, bastion and vanguard households are
        // party members' homes named in a medium, small or micro grid.
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.shuffle(&mut rng);
        let mut order = order.into_iter();
        for (role, count) in [
            (HouseholdRole::Central, plan.households_roles[0]),
            (HouseholdRole::Bastion, plan.households_roles[1]),
            (HouseholdRole::Vanguard, plan.households_roles[2]),
        ] {
            for i in order.by_ref().take(count) {
                members[i].household_role = Some(role);
            }
        }

        let heads = generate_heads(plan, district, &mut rng);
        People {
            orgs,
            members,
            heads,
        }
    }

    pub fn count_orgs(&self, kind: OrgKind) -> usize {
        self.orgs.iter().filter(|o| o.kind == kind).count()
    }
}

fn unit_name(code: &str) -> String {
    code.rsplit('U')
        .next()
        .map(|n| format!("{n}单元"))
        .unwrap_or_default()
}

/// The four heads: grid heads for the first grids, compound heads for the
/// first compounds, and so on, as many as the plan counts.
fn generate_heads(plan: &DistrictPlan, district: &District, rng: &mut ChaCha8Rng) -> Vec<Head> {
    let mut heads = Vec::new();
    let mut push = |rng: &mut ChaCha8Rng, role: WorkerRole, grid: &str, post_of: &str| {
        let (name, male, _) = person(rng);
        let (y, m, d) = date(rng, 2015..2024);
        heads.push(Head {
            id: format!("{}-W-{:06}", plan.code, heads.len() + 1),
            name,
            male,
            phone: phone(rng),
            role,
            grid: grid.to_string(),
            post_of: post_of.to_string(),
            is_party_member: rng.random_bool(0.4),
            since: format!("{y}-{m:02}-{d:02}"),
        });
    };
    let mut grids: Vec<&super::Grid> = district.grids.iter().collect();
    grids.sort_by_key(|g| (g.tier as u8, g.code.clone()));
    for g in grids.iter().take(plan.heads[0]) {
        push(rng, WorkerRole::GridHead, &g.code, &g.code);
    }
    for c in district.compounds.iter().take(plan.heads[1]) {
        push(rng, WorkerRole::CompoundHead, &c.grid, &c.code);
    }
    for b in district.buildings.iter().take(plan.heads[2]) {
        push(rng, WorkerRole::BuildingHead, &b.grid, &b.code);
    }
    let grid_of: std::collections::HashMap<&str, &str> = district
        .buildings
        .iter()
        .map(|b| (b.code.as_str(), b.grid.as_str()))
        .collect();
    for u in district.units.iter().take(plan.heads[3]) {
        let grid = grid_of
            .get(u.building.as_str())
            .copied()
            .unwrap_or_default();
        push(rng, WorkerRole::UnitHead, grid, &u.code);
    }
    heads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::plans::{HUIMIN, JINING};

    #[test]
    fn huimin_people_match_the_articles() {
        let d = District::generate(&HUIMIN, 7);
        let p = People::generate(&HUIMIN, &d, 7);
        assert_eq!(p.orgs.len(), 400);
        assert_eq!(p.count_orgs(OrgKind::Branch), 197);
        assert_eq!(p.members.len(), 9657);
        let registered = p
            .members
            .iter()
            .filter(|m| m.status == MemberStatus::InServiceRegistered)
            .count();
        assert_eq!(registered, 2433);
        assert!(p.members.iter().all(|m| idcard::is_valid(&m.id_number)));
        assert!(p.members.iter().all(|m| m.id_number.starts_with("150103")));
        assert!(p.members.iter().all(|m| m.grid.starts_with("150103")));
        let ids: std::collections::HashSet<_> = p.members.iter().map(|m| &m.id_number).collect();
        assert_eq!(ids.len(), p.members.len(), "ID numbers are unique");
        let org_ids: std::collections::HashSet<_> = p.orgs.iter().map(|o| &o.id).collect();
        assert!(p.members.iter().all(|m| org_ids.contains(&m.org)));
    }

    #[test]
    fn jining_heads_and_households() {
        let d = District::generate(&JINING, 7);
        let p = People::generate(&JINING, &d, 7);
        let count = |r: WorkerRole| p.heads.iter().filter(|h| h.role == r).count();
        assert_eq!(
            [
                count(WorkerRole::GridHead),
                count(WorkerRole::CompoundHead),
                count(WorkerRole::BuildingHead),
                count(WorkerRole::UnitHead)
            ],
            [426, 778, 3238, 10464]
        );
        let role = |r: HouseholdRole| {
            p.members
                .iter()
                .filter(|m| m.household_role == Some(r))
                .count()
        };
        assert_eq!(
            [
                role(HouseholdRole::Central),
                role(HouseholdRole::Bastion),
                role(HouseholdRole::Vanguard)
            ],
            [766, 1886, 5192]
        );
    }
}
