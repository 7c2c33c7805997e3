//! The district model and its deterministic generation.
//!
//! Codes nest: every code starts with its parent's code (6-digit district,
//! 9-digit street, 12-digit community, then two digits per grid tier), so
//! "inside division X" is "code starts with X" in every database.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::names::{COMMUNITY_STEMS, COMPOUND_PREFIXES, COMPOUND_SUFFIXES, numeral};
use super::plans::DistrictPlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    District,
    Street,
    Community,
    Grid,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::District => "district",
            Level::Street => "street",
            Level::Community => "community",
            Level::Grid => "grid",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridTier {
    Big,
    Medium,
    Small,
    Micro,
}

impl GridTier {
    pub const ALL: [GridTier; 4] = [
        GridTier::Big,
        GridTier::Medium,
        GridTier::Small,
        GridTier::Micro,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GridTier::Big => "big",
            GridTier::Medium => "medium",
            GridTier::Small => "small",
            GridTier::Micro => "micro",
        }
    }
}

/// District, street or community.
#[derive(Debug, Clone)]
pub struct Division {
    pub code: String,
    pub name: String,
    pub level: Level,
    pub parent: Option<String>,
    pub households: i64,
    pub population: i64,
}

#[derive(Debug, Clone)]
pub struct Grid {
    pub code: String,
    pub name: String,
    pub tier: GridTier,
    /// The community, or the grid of the tier above.
    pub parent: String,
    pub community: String,
    pub households: i64,
    pub party_branch: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Compound {
    pub code: String,
    pub name: String,
    pub community: String,
    pub grid: String,
    pub is_old: bool,
    pub built_year: i64,
}

#[derive(Debug, Clone)]
pub struct Building {
    pub code: String,
    pub name: String,
    pub compound: String,
    pub grid: String,
    pub floors: i64,
}

#[derive(Debug, Clone)]
pub struct Unit {
    pub code: String,
    pub name: String,
    pub building: String,
    pub households: i64,
}

#[derive(Debug, Clone)]
pub struct District {
    pub code: String,
    pub name: String,
    /// The district itself, its streets and its communities.
    pub divisions: Vec<Division>,
    pub grids: Vec<Grid>,
    pub compounds: Vec<Compound>,
    pub buildings: Vec<Building>,
    pub units: Vec<Unit>,
}

/// Split `total` over `parts` as evenly as possible, larger shares first.
fn spread(total: usize, parts: usize) -> Vec<usize> {
    if parts == 0 {
        return vec![];
    }
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .collect()
}

impl District {
    pub fn generate(plan: &DistrictPlan, seed: u64) -> District {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ plan.code.parse::<u64>().unwrap_or(0));
        let mut divisions = vec![Division {
            code: plan.code.into(),
            name: plan.name.into(),
            level: Level::District,
            parent: Some(format!("{}00", &plan.code[..4])),
            households: 0,
            population: 0,
        }];

        // Streets and communities.
        let mut communities = Vec::new();
        // Index into `divisions` → the plan's figures for that community.
        let mut specials: Vec<(usize, &super::plans::SpecialCommunity)> = Vec::new();
        // Start each district elsewhere in the list; repeats get a direction.
        let offset = plan.code.bytes().map(usize::from).sum::<usize>() % COMMUNITY_STEMS.len();
        let mut stems = COMMUNITY_STEMS.iter().cycle().skip(offset);
        let mut used: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for ((suffix, name), count) in plan.streets.iter().zip(plan.communities_per_street) {
            let street = format!("{}{suffix}", plan.code);
            divisions.push(Division {
                code: street.clone(),
                name: (*name).into(),
                level: Level::Street,
                parent: Some(plan.code.into()),
                households: 0,
                population: 0,
            });
            for i in 1..=*count {
                let code = format!("{street}{i:03}");
                let base = stems.next().copied().unwrap_or("新");
                let seen = used.entry(base).or_insert(0);
                let stem = match *seen {
                    0 => base.to_string(),
                    n => format!(
                        "{base}{}",
                        ["东", "西", "南", "北", "中", "新"][(n - 1) % 6]
                    ),
                };
                *seen += 1;
                let special = plan
                    .special_communities
                    .iter()
                    .find(|s| s.street == *suffix && s.index == i);
                if let Some(special) = special {
                    specials.push((divisions.len(), special));
                }
                communities.push(divisions.len());
                divisions.push(Division {
                    code,
                    name: special.map_or_else(|| format!("{stem}社区"), |s| s.name.to_string()),
                    level: Level::Community,
                    parent: Some(street.clone()),
                    households: 0,
                    population: 0,
                });
            }
        }

        // Compounds, a share of them old.
        let mut compounds = Vec::with_capacity(plan.compounds);
        let mut old = vec![false; plan.compounds];
        old.iter_mut()
            .take(plan.old_compounds)
            .for_each(|o| *o = true);
        old.shuffle(&mut rng);
        let per_community = spread(plan.compounds, communities.len());
        for (ci, &di) in communities.iter().enumerate() {
            let community = divisions[di].code.clone();
            for k in 1..=per_community[ci] {
                let is_old = old[compounds.len()];
                let prefix = COMPOUND_PREFIXES[rng.random_range(0..COMPOUND_PREFIXES.len())];
                let suffix = COMPOUND_SUFFIXES[rng.random_range(0..COMPOUND_SUFFIXES.len())];
                compounds.push(Compound {
                    code: format!("{community}C{k:03}"),
                    name: format!("{prefix}{suffix}"),
                    community: community.clone(),
                    grid: String::new(),
                    is_old,
                    built_year: if is_old {
                        rng.random_range(1975..2000)
                    } else {
                        rng.random_range(2000..2021)
                    },
                });
            }
        }

        // Grids: big grids per community, each lower tier spread over the
        // grids of the tier above.
        let mut grids: Vec<Grid> = Vec::new();
        let special_of = |di: usize| specials.iter().find(|(i, _)| *i == di).map(|(_, s)| *s);
        let special_bigs: usize = specials.iter().map(|(_, s)| s.big_grids).sum();
        let mut bigs = spread(
            plan.grid_tiers[0].saturating_sub(special_bigs),
            communities.len() - specials.len(),
        )
        .into_iter();
        for &di in &communities {
            let community = &divisions[di];
            let special = special_of(di);
            let count = special.map_or_else(|| bigs.next().unwrap_or(0), |s| s.big_grids);
            for k in 1..=count {
                // A described community's households split over its grids.
                let households = match special {
                    Some(s) => {
                        s.households / count as i64
                            + i64::from(k as i64 <= s.households % count as i64)
                    }
                    None => rng.random_range(400..900),
                };
                grids.push(Grid {
                    code: format!("{}{k:02}", community.code),
                    name: format!("{}第{}网格", community.name, numeral(k)),
                    tier: GridTier::Big,
                    parent: community.code.clone(),
                    community: community.code.clone(),
                    households,
                    party_branch: None,
                });
            }
        }
        for (tier_index, tier) in GridTier::ALL.iter().enumerate().skip(1) {
            let parents: Vec<Grid> = grids
                .iter()
                .filter(|g| g.tier == GridTier::ALL[tier_index - 1])
                .cloned()
                .collect();
            let shares = spread(plan.grid_tiers[tier_index], parents.len());
            let households = match tier {
                GridTier::Medium => 150..400,
                GridTier::Small => 30..90,
                _ => 8..15,
            };
            for (parent, share) in parents.iter().zip(shares) {
                for k in 1..=share {
                    let name = match tier {
                        GridTier::Medium => format!("{}{}号中网格", parent.name, k),
                        GridTier::Small => format!("{}{}号小网格", parent.name, k),
                        _ => format!("{}{}号微网格", parent.name, k),
                    };
                    grids.push(Grid {
                        code: format!("{}{k:02}", parent.code),
                        name,
                        tier: *tier,
                        parent: parent.code.clone(),
                        community: parent.community.clone(),
                        households: rng.random_range(households.clone()),
                        party_branch: None,
                    });
                }
            }
        }
        grids.sort_by(|a, b| a.code.cmp(&b.code));
        for (n, grid) in grids
            .iter_mut()
            .filter(|g| matches!(g.tier, GridTier::Big | GridTier::Medium))
            .take(plan.grid_party_branches)
            .enumerate()
        {
            grid.party_branch = Some(format!("{}-DZB-{:04}", plan.code, n + 1));
        }

        // Each compound belongs to the finest grid of its community that
        // is still free, cycling; buildings follow their compound's grid.
        for compound in compounds.iter_mut() {
            let candidates: Vec<&Grid> = grids
                .iter()
                .filter(|g| g.community == compound.community && g.tier != GridTier::Micro)
                .collect();
            if let Some(g) = candidates.get(rng.random_range(0..candidates.len().max(1))) {
                compound.grid = g.code.clone();
            }
        }
        // Buildings per compound; a described community gets its own count.
        let mut shares = vec![0usize; compounds.len()];
        let special_buildings: usize = specials.iter().map(|(_, s)| s.buildings).sum();
        let ordinary: Vec<usize> = (0..compounds.len())
            .filter(|&i| {
                !specials
                    .iter()
                    .any(|(di, _)| divisions[*di].code == compounds[i].community)
            })
            .collect();
        for (i, n) in ordinary.iter().zip(spread(
            plan.buildings.saturating_sub(special_buildings),
            ordinary.len(),
        )) {
            shares[*i] = n;
        }
        for (di, special) in &specials {
            let mine: Vec<usize> = (0..compounds.len())
                .filter(|&i| compounds[i].community == divisions[*di].code)
                .collect();
            for (i, n) in mine.iter().zip(spread(special.buildings, mine.len())) {
                shares[*i] = n;
            }
        }
        let mut buildings = Vec::with_capacity(plan.buildings);
        for (compound, share) in compounds.iter().zip(shares) {
            for k in 1..=share {
                buildings.push(Building {
                    code: format!("{}B{k:02}", compound.code),
                    name: format!("{}{}号楼", compound.name, k),
                    compound: compound.code.clone(),
                    grid: compound.grid.clone(),
                    floors: if compound.is_old {
                        rng.random_range(4..8)
                    } else {
                        rng.random_range(6..34)
                    },
                });
            }
        }
        let mut units = Vec::with_capacity(plan.units);
        for (building, share) in buildings.iter().zip(spread(plan.units, buildings.len())) {
            for k in 1..=share {
                units.push(Unit {
                    code: format!("{}U{k}", building.code),
                    name: format!("{}单元", numeral(k)),
                    building: building.code.clone(),
                    households: rng.random_range(8..25),
                });
            }
        }

        // Roll households and population up from the big grids.
        for grid in grids.iter().filter(|g| g.tier == GridTier::Big) {
            for division in divisions.iter_mut() {
                if grid.code.starts_with(&division.code) {
                    division.households += grid.households;
                }
            }
        }
        for division in divisions.iter_mut() {
            division.population = division.households * 255 / 100;
        }
        // A described community's population is the article's, and its
        // street and district count the difference too.
        for (di, special) in &specials {
            let extra = special.population - divisions[*di].population;
            let code = divisions[*di].code.clone();
            for division in divisions.iter_mut().filter(|d| code.starts_with(&d.code)) {
                division.population += extra;
            }
        }

        District {
            code: plan.code.into(),
            name: plan.name.into(),
            divisions,
            grids,
            compounds,
            buildings,
            units,
        }
    }

    pub fn count_grids(&self, tier: GridTier) -> usize {
        self.grids.iter().filter(|g| g.tier == tier).count()
    }

    pub fn count_divisions(&self, level: Level) -> usize {
        self.divisions.iter().filter(|d| d.level == level).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::plans::HUIMIN;

    #[test]
    fn huimin_matches_the_articles() {
        let d = District::generate(&HUIMIN, 7);
        assert_eq!(d.count_divisions(Level::Street), 8);
        assert_eq!(d.count_divisions(Level::Community), 50);
        assert_eq!(d.compounds.len(), 513);
        assert_eq!(d.compounds.iter().filter(|c| c.is_old).count(), 372);
        assert_eq!(d.grids.len(), 537);
        assert_eq!(GridTier::ALL.map(|t| d.count_grids(t)), [100, 160, 190, 87]);
        assert_eq!(d.buildings.len(), 2126);
        assert_eq!(d.units.len(), 7665);
        assert_eq!(
            d.grids.iter().filter(|g| g.party_branch.is_some()).count(),
            197
        );
        assert!(
            d.divisions
                .iter()
                .any(|x| x.code == "150103001" && x.name == "新华西路街道")
        );
        assert!(
            d.divisions
                .iter()
                .any(|x| x.code == "150103100" && x.name == "攸攸板镇")
        );
    }

    #[test]
    fn saihan_and_jining_match_the_articles() {
        use crate::generate::plans::{JINING, SAIHAN};
        let s = District::generate(&SAIHAN, 7);
        assert_eq!(s.count_divisions(Level::Community), 110);
        let towns: usize = s
            .divisions
            .iter()
            .filter(|d| d.level == Level::Community && d.code[6..9].starts_with('1'))
            .count();
        assert_eq!(towns, 23, "village-to-community in the three towns");
        let xingkang = s
            .divisions
            .iter()
            .find(|d| d.name == "兴康社区")
            .expect("兴康社区");
        assert_eq!(xingkang.households, 2758);
        assert_eq!(xingkang.population, 7012);
        let xk_bigs = s.grids.iter().filter(|g| g.parent == xingkang.code).count();
        assert_eq!(xk_bigs, 5);
        let xk_buildings = s
            .buildings
            .iter()
            .filter(|b| b.code.starts_with(&xingkang.code))
            .count();
        assert_eq!(xk_buildings, 63);
        assert_eq!(s.count_grids(GridTier::Big), 341);

        let j = District::generate(&JINING, 7);
        assert_eq!(
            GridTier::ALL.map(|t| j.count_grids(t)),
            [502, 1237, 3786, 10653]
        );
    }

    #[test]
    fn codes_nest_and_are_unique() {
        let d = District::generate(&HUIMIN, 7);
        let mut codes: Vec<&str> = d.divisions.iter().map(|x| x.code.as_str()).collect();
        codes.extend(d.grids.iter().map(|g| g.code.as_str()));
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n, "duplicate codes");
        for g in &d.grids {
            assert!(
                g.code.starts_with(&g.parent),
                "{} under {}",
                g.code,
                g.parent
            );
            assert!(g.code.starts_with(&g.community));
        }
        for b in &d.buildings {
            assert!(!b.grid.is_empty() && b.code.starts_with(&b.compound));
        }
    }

    #[test]
    fn same_seed_same_district() {
        let a = District::generate(&HUIMIN, 42);
        let b = District::generate(&HUIMIN, 42);
        assert_eq!(format!("{:?}", a.grids), format!("{:?}", b.grids));
        let c = District::generate(&HUIMIN, 43);
        assert_ne!(format!("{:?}", a.compounds), format!("{:?}", c.compounds));
    }
}
