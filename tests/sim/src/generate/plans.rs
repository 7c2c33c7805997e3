//! Real codes and counts per district, from ../shared/DOMAIN.md. Where the
//! articles give no figure, the plan says so and picks a plausible one.

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
    /// Communities with figures of their own: (street suffix, index within
    /// the street from 1, name, big grids, households, buildings).
    pub special_communities: &'static [SpecialCommunity],
    pub compounds: usize,
    pub old_compounds: usize,
    /// Grids per tier: big, medium, small, micro.
    pub grid_tiers: [usize; 4],
    pub buildings: usize,
    pub units: usize,
    /// Grid party branches (the first big and medium grids get one).
    pub grid_party_branches: usize,
    /// Party organizations in all, and party members.
    pub party_orgs: usize,
    pub party_members: usize,
    /// In-service members registered in their community (双报到).
    pub in_service_registered: usize,
    /// "Three households": central, bastion, vanguard.
    pub households_roles: [usize; 3],
    /// "Four heads": grid, compound, building, unit heads.
    pub heads: [usize; 4],
    /// Party–masses service centres (1 + 8 + N).
    pub service_centers: usize,
}

/// A community the articles describe in detail.
#[derive(Debug, Clone)]
pub struct SpecialCommunity {
    pub street: &'static str,
    pub index: usize,
    pub name: &'static str,
    pub big_grids: usize,
    pub households: i64,
    pub population: i64,
    pub buildings: usize,
}

/// Huimin district (回民区), Hohhot: 1 town, 7 streets, 50 communities,
/// 513 compounds (372 old), 537 grids, 2,126 building heads and 7,665 unit
/// heads, 197 grid party branches, 400 organizations, 9,657 members,
/// 2,433 in-service members registered, 88 service centres.
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
    special_communities: &[],
    compounds: 513,
    old_compounds: 372,
    // Not split by tier in the articles: 537 in all.
    grid_tiers: [100, 160, 190, 87],
    buildings: 2126,
    units: 7665,
    grid_party_branches: 197,
    party_orgs: 400,
    party_members: 9657,
    in_service_registered: 2433,
    // Not given for Huimin: one household per medium/small/micro grid.
    households_roles: [160, 190, 87],
    heads: [537, 513, 2126, 7665],
    service_centers: 88,
};

/// Saihan district (赛罕区), Hohhot: 87 urban communities + 23
/// village-to-community, 341 grid party branches, 1,910 in-service members
/// registered; Xingkang community (兴康社区): 5 grids, 63 buildings,
/// 2,758 households, 7,000+ residents.
pub const SAIHAN: DistrictPlan = DistrictPlan {
    code: "150105",
    name: "赛罕区",
    streets: &[
        ("001", "人民路街道"),
        ("002", "大学东路街道"),
        ("003", "大学西路街道"),
        ("004", "中专路街道"),
        ("005", "乌兰察布东路街道"),
        ("006", "昭乌达路街道"),
        ("007", "敕勒川路街道"),
        ("008", "巴彦街道"),
        ("009", "鄂尔多斯大街街道"),
        ("010", "西把栅街道"),
        ("101", "金河镇"),
        ("102", "黄合少镇"),
        ("103", "榆林镇"),
    ],
    // 87 urban communities in the streets, 23 village-to-community in the towns.
    communities_per_street: &[9, 9, 9, 9, 9, 9, 9, 8, 8, 8, 8, 8, 7],
    special_communities: &[SpecialCommunity {
        street: "002",
        index: 1,
        name: "兴康社区",
        big_grids: 5,
        households: 2758,
        population: 7012,
        buildings: 63,
    }],
    compounds: 690,
    old_compounds: 300,
    // Not given: a big grid per grid party branch.
    grid_tiers: [341, 520, 900, 0],
    buildings: 3100,
    units: 9800,
    grid_party_branches: 341,
    party_orgs: 560,
    party_members: 11800,
    in_service_registered: 1910,
    households_roles: [520, 900, 0],
    heads: [341, 690, 3100, 9800],
    service_centers: 124,
};

/// Jining district (集宁区), Ulanqab: 502/1,237/3,786/10,653 big, medium,
/// small and micro grids; 766 central, 1,886 bastion, 5,192 vanguard
/// households; 426 grid, 778 compound, 3,238 building and 10,464 unit
/// heads; 5,081 in-service members covering 781 compounds.
pub const JINING: DistrictPlan = DistrictPlan {
    code: "150902",
    name: "集宁区",
    streets: &[
        ("001", "新体路街道"),
        ("002", "桥东街道"),
        ("003", "桥西街道"),
        ("004", "前进街道"),
        ("005", "虎山街道"),
        ("006", "泉山街道"),
        ("007", "常青街道"),
        ("100", "白海子镇"),
        ("200", "马莲渠乡"),
    ],
    communities_per_street: &[8, 8, 8, 7, 7, 7, 7, 4, 4],
    special_communities: &[],
    // A medium grid is one compound, a small one a building, a micro one a unit.
    compounds: 1237,
    old_compounds: 640,
    grid_tiers: [502, 1237, 3786, 10653],
    buildings: 3786,
    units: 10653,
    // Not given: fewer grid branches than big grids (460 organizations in all).
    grid_party_branches: 300,
    party_orgs: 460,
    party_members: 10400,
    in_service_registered: 5081,
    households_roles: [766, 1886, 5192],
    heads: [426, 778, 3238, 10464],
    service_centers: 96,
};

/// Districts the city platform's registry lists but that connect no
/// database of their own in the demo: streets and communities only.
pub const XINCHENG: DistrictPlan = DistrictPlan {
    code: "150102",
    name: "新城区",
    streets: &[
        ("001", "海拉尔东路街道"),
        ("002", "锡林路街道"),
        ("003", "中山东路街道"),
        ("004", "东街街道"),
        ("005", "西街街道"),
        ("006", "东风路街道"),
        ("007", "迎新路街道"),
        ("008", "成吉思汗大街街道"),
        ("100", "保合少镇"),
    ],
    communities_per_street: &[6, 6, 5, 5, 5, 6, 6, 5, 3],
    special_communities: &[],
    compounds: 0,
    old_compounds: 0,
    grid_tiers: [0, 0, 0, 0],
    buildings: 0,
    units: 0,
    grid_party_branches: 0,
    party_orgs: 0,
    party_members: 0,
    in_service_registered: 0,
    households_roles: [0, 0, 0],
    heads: [0, 0, 0, 0],
    service_centers: 0,
};

pub const YUQUAN: DistrictPlan = DistrictPlan {
    code: "150104",
    name: "玉泉区",
    streets: &[
        ("001", "小召前街街道"),
        ("002", "西菜园街道"),
        ("003", "长和廊街道"),
        ("004", "石东路街道"),
        ("005", "鄂尔多斯路街道"),
        ("006", "兴隆巷街道"),
        ("007", "昭君路街道"),
        ("101", "小黑河镇"),
    ],
    communities_per_street: &[5, 5, 5, 5, 5, 4, 4, 4],
    ..XINCHENG
};

/// Every district the simulators know, with the city it belongs to.
pub const ALL: &[(&str, &DistrictPlan)] = &[
    ("150100", &XINCHENG),
    ("150100", &HUIMIN),
    ("150100", &YUQUAN),
    ("150100", &SAIHAN),
    ("150900", &JINING),
];
