//! Real codes and counts per district, from ../shared/DOMAIN.md.

/// What to generate for one district.
#[derive(Debug, Clone)]
pub struct DistrictPlan {
    /// GB/T 2260 code.
    pub code: &'static str,
    pub name: &'static str,
    /// Street-level units: 3-digit statistical suffix and name.
    pub streets: &'static [(&'static str, &'static str)],
    /// Communities per street, in the order of `streets`.
    pub communities_per_street: &'static [usize],
    pub compounds: usize,
    pub old_compounds: usize,
    /// Grids per tier: big, medium, small, micro.
    pub grid_tiers: [usize; 4],
    pub buildings: usize,
    pub units: usize,
    /// Grid party branches (the first grids of each community get one).
    pub grid_party_branches: usize,
}

/// Huimin district (回民区), Hohhot: 1 town, 7 streets, 50 communities,
/// 513 compounds (372 old), 537 grids, 2,126 building heads and 7,665 unit
/// heads (one per building and unit), 197 grid party branches.
pub const HUIMIN: DistrictPlan = DistrictPlan {
    code: "150103",
    name: "回民区",
    streets: &[
        ("001", "新华西路街道"),
        ("002", "中山西路街道"),
        ("003", "光明路街道"),
        ("004", "海拉尔西路街道"),
        ("005", "环河街街道"),
        ("006", "通道街街道"),
        ("007", "钢铁路街道"),
        ("100", "攸攸板镇"),
    ],
    communities_per_street: &[7, 7, 6, 6, 6, 6, 6, 6],
    compounds: 513,
    old_compounds: 372,
    grid_tiers: [100, 160, 190, 87],
    buildings: 2126,
    units: 7665,
    grid_party_branches: 197,
};
