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
    pub const ALL: [GridTier; 4] = [GridTier::Big, GridTier::Medium, GridTier::Small, GridTier::Micro];

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
        let mut stems = COMMUNITY_STEMS.iter().cycle();
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
                let stem = stems.next().copied().unwrap_or("新");
                communities.push(divisions.len());
                divisions.push(Division {
                    code,
                    name: format!("{stem}社区"),
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
        old.iter_mut().take(plan.old_compounds).for_each(|o| *o = true);
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
        let bigs = spread(plan.grid_tiers[0], communities.len());
        for (ci, &di) in communities.iter().enumerate() {
            let community = &divisions[di];
            for k in 1..=bigs[ci] {
                grids.push(Grid {
                    code: format!("{}{k:02}", community.code),
                    name: format!("{}第{}网格", community.name, numeral(k)),
                    tier: GridTier::Big,
                    parent: community.code.clone(),
                    community: community.code.clone(),
                    households: rng.random_range(400..900),
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
        let mut buildings = Vec::with_capacity(plan.buildings);
        for (compound, share) in compounds.iter().zip(spread(plan.buildings, compounds.len())) {
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
        assert_eq!(
            GridTier::ALL.map(|t| d.count_grids(t)),
            [100, 160, 190, 87]
        );
        assert_eq!(d.buildings.len(), 2126);
        assert_eq!(d.units.len(), 7665);
        assert_eq!(d.grids.iter().filter(|g| g.party_branch.is_some()).count(), 197);
        assert!(d.divisions.iter().any(|x| x.code == "150103001" && x.name == "新华西路街道"));
        assert!(d.divisions.iter().any(|x| x.code == "150103100" && x.name == "攸攸板镇"));
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
            assert!(g.code.starts_with(&g.parent), "{} under {}", g.code, g.parent);
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
