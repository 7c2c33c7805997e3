//! The whole region: Inner Mongolia's 12 leagues and cities and their 103
//! county-level districts and banners (GB/T 2260 codes and names), each
//! generated as a district of its own in one of the three schema styles
//! the demo's districts use. For tests and benchmarks at the scale the
//! product is for (`lianqiao-sim region`, `cargo xtask region`); the demo
//! stays small.
//!
//! A district's size follows the district it takes its schema from
//! (Huimin-like, Saihan-like, Jining-like, DOMAIN.md), scaled by
//! [`Scale`]. Street and community names are synthesised; codes are real
//! down to the district and statistical-style below it.

use super::plans::DistrictPlan;

/// The region's leagues and cities (GB/T 2260), and whether the city runs
/// an integrated platform of its own the gateway connects to (the demo's
/// Hohhot does; the region's generator gives four cities one).
pub const CITIES: &[(&str, &str, bool)] = &[
    ("150100", "呼和浩特市", true),
    ("150200", "包头市", true),
    ("150300", "乌海市", false),
    ("150400", "赤峰市", true),
    ("150500", "通辽市", false),
    ("150600", "鄂尔多斯市", true),
    ("150700", "呼伦贝尔市", false),
    ("150800", "巴彦淖尔市", false),
    ("150900", "乌兰察布市", false),
    ("152200", "兴安盟", false),
    ("152500", "锡林郭勒盟", false),
    ("152900", "阿拉善盟", false),
];

/// Every county-level division of the region (103), by city.
pub const DISTRICTS: &[(&str, &str)] = &[
    ("150102", "新城区"),
    ("150103", "回民区"),
    ("150104", "玉泉区"),
    ("150105", "赛罕区"),
    ("150121", "土默特左旗"),
    ("150122", "托克托县"),
    ("150123", "和林格尔县"),
    ("150124", "清水河县"),
    ("150125", "武川县"),
    ("150202", "东河区"),
    ("150203", "昆都仑区"),
    ("150204", "青山区"),
    ("150205", "石拐区"),
    ("150206", "白云鄂博矿区"),
    ("150207", "九原区"),
    ("150221", "土默特右旗"),
    ("150222", "固阳县"),
    ("150223", "达尔罕茂明安联合旗"),
    ("150302", "海勃湾区"),
    ("150303", "海南区"),
    ("150304", "乌达区"),
    ("150402", "红山区"),
    ("150403", "元宝山区"),
    ("150404", "松山区"),
    ("150421", "阿鲁科尔沁旗"),
    ("150422", "巴林左旗"),
    ("150423", "巴林右旗"),
    ("150424", "林西县"),
    ("150425", "克什克腾旗"),
    ("150426", "翁牛特旗"),
    ("150428", "喀喇沁旗"),
    ("150429", "宁城县"),
    ("150430", "敖汉旗"),
    ("150502", "科尔沁区"),
    ("150521", "科尔沁左翼中旗"),
    ("150522", "科尔沁左翼后旗"),
    ("150523", "开鲁县"),
    ("150524", "库伦旗"),
    ("150525", "奈曼旗"),
    ("150526", "扎鲁特旗"),
    ("150581", "霍林郭勒市"),
    ("150602", "东胜区"),
    ("150603", "康巴什区"),
    ("150621", "达拉特旗"),
    ("150622", "准格尔旗"),
    ("150623", "鄂托克前旗"),
    ("150624", "鄂托克旗"),
    ("150625", "杭锦旗"),
    ("150626", "乌审旗"),
    ("150627", "伊金霍洛旗"),
    ("150702", "海拉尔区"),
    ("150703", "扎赉诺尔区"),
    ("150721", "阿荣旗"),
    ("150722", "莫力达瓦达斡尔族自治旗"),
    ("150723", "鄂伦春自治旗"),
    ("150724", "鄂温克族自治旗"),
    ("150725", "陈巴尔虎旗"),
    ("150726", "新巴尔虎左旗"),
    ("150727", "新巴尔虎右旗"),
    ("150781", "满洲里市"),
    ("150782", "牙克石市"),
    ("150783", "扎兰屯市"),
    ("150784", "额尔古纳市"),
    ("150785", "根河市"),
    ("150802", "临河区"),
    ("150821", "五原县"),
    ("150822", "磴口县"),
    ("150823", "乌拉特前旗"),
    ("150824", "乌拉特中旗"),
    ("150825", "乌拉特后旗"),
    ("150826", "杭锦后旗"),
    ("150902", "集宁区"),
    ("150921", "卓资县"),
    ("150922", "化德县"),
    ("150923", "商都县"),
    ("150924", "兴和县"),
    ("150925", "凉城县"),
    ("150926", "察哈尔右翼前旗"),
    ("150927", "察哈尔右翼中旗"),
    ("150928", "察哈尔右翼后旗"),
    ("150929", "四子王旗"),
    ("150981", "丰镇市"),
    ("152201", "乌兰浩特市"),
    ("152202", "阿尔山市"),
    ("152221", "科尔沁右翼前旗"),
    ("152222", "科尔沁右翼中旗"),
    ("152223", "扎赉特旗"),
    ("152224", "突泉县"),
    ("152501", "二连浩特市"),
    ("152502", "锡林浩特市"),
    ("152522", "阿巴嘎旗"),
    ("152523", "苏尼特左旗"),
    ("152524", "苏尼特右旗"),
    ("152525", "东乌珠穆沁旗"),
    ("152526", "西乌珠穆沁旗"),
    ("152527", "太仆寺旗"),
    ("152528", "镶黄旗"),
    ("152529", "正镶白旗"),
    ("152530", "正蓝旗"),
    ("152531", "多伦县"),
    ("152921", "阿拉善左旗"),
    ("152922", "阿拉善右旗"),
    ("152923", "额济纳旗"),
];

/// The schema a generated district's database has: one of the demo's
/// three, so one mapping serves every district of a style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Huimin's SQLite schema (`sqlite_huimin`).
    Huimin,
    /// Saihan's (`schema_saihan`).
    Saihan,
    /// Jining's (`schema_jining`).
    Jining,
}

impl Style {
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Huimin => "huimin",
            Style::Saihan => "saihan",
            Style::Jining => "jining",
        }
    }
}

/// How big each district is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A few streets, communities and grids each: a 100-source region that
    /// starts in seconds, for the end-to-end tests.
    Small,
    /// Huimin-, Saihan- and Jining-like districts (Jining's micro-grid
    /// density at a quarter, party members at a fifth, so the party-link
    /// simulator holds the region in a few hundred MiB): for benchmarks.
    Full,
}

/// One generated district: its city, schema style and plan.
#[derive(Debug, Clone)]
pub struct RegionDistrict {
    pub city: &'static str,
    pub style: Style,
    pub plan: DistrictPlan,
}

/// Street stems for synthesised names (a street takes 路街道, a town 镇).
const STREET_STEMS: &[&str] = &[
    "新华", "建设", "胜利", "团结", "和平", "光明", "友谊", "育才", "文化", "幸福", "解放", "人民",
    "民族", "兴安", "振华", "富强", "长青", "草原", "滨河", "南湖", "北苑", "朝阳", "锦绣", "康乐",
];

/// Leaked for the `'static` plans the district generator takes: a region
/// is generated once per process, so this is bounded by one region.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The city a district code belongs to.
pub fn city_of(code: &str) -> &'static str {
    CITIES
        .iter()
        .find(|(c, _, _)| c[..4] == code[..4])
        .map(|(c, _, _)| *c)
        .unwrap_or("150000")
}

/// The region's districts, the first `count` of them (all 103 at most;
/// past 103, up to 480 more are made up under the real cities, codes
/// xxxx40–79, for stress cases). Deterministic: style by position, names from the code.
pub fn districts(count: usize, scale: Scale) -> Vec<RegionDistrict> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let (code, name): (&'static str, &'static str) = match DISTRICTS.get(i) {
            Some((c, n)) => (c, n),
            None => {
                // Codes 40–79 are unused under every city: 480 more at most.
                let k = i - DISTRICTS.len();
                let (city, city_name, _) = CITIES[k % CITIES.len()];
                let n = 40 + (k / CITIES.len()) % 40;
                (
                    leak(format!("{}{n:02}", &city[..4])),
                    leak(format!("{city_name}测试区{n}")),
                )
            }
        };
        let style = [Style::Huimin, Style::Saihan, Style::Jining][i % 3];
        out.push(RegionDistrict {
            city: city_of(code),
            style,
            plan: plan(code, name, style, scale, i),
        });
    }
    out
}

fn plan(
    code: &'static str,
    name: &'static str,
    style: Style,
    scale: Scale,
    i: usize,
) -> DistrictPlan {
    let template = match style {
        Style::Huimin => &super::plans::HUIMIN,
        Style::Saihan => &super::plans::SAIHAN,
        Style::Jining => &super::plans::JINING,
    };
    let (streets, per_street): (usize, usize) = match scale {
        Scale::Small => (2, 2),
        Scale::Full => (
            template.streets.len(),
            template.communities_per_street.iter().sum::<usize>() / template.streets.len(),
        ),
    };
    let street_list: Vec<(&'static str, &'static str)> = (0..streets)
        .map(|s| {
            let stem = STREET_STEMS[(i * 7 + s) % STREET_STEMS.len()];
            // The last unit of a district is a town, as in the demo's.
            if s + 1 == streets && streets > 2 {
                (leak(format!("{:03}", 100 + s)), leak(format!("{stem}镇")))
            } else {
                (leak(format!("{:03}", s + 1)), leak(format!("{stem}路街道")))
            }
        })
        .collect();
    let communities = streets * per_street;
    // Sizes: the template's, per community, times the scale's factor.
    let per = |n: usize, factor: f64| -> usize {
        let c = template.communities_per_street.iter().sum::<usize>().max(1);
        ((n as f64 * factor * communities as f64 / c as f64).round() as usize)
            .max(usize::from(n > 0))
    };
    let (grid_factor, micro_factor, member_factor): (f64, f64, f64) = match (scale, style) {
        (Scale::Small, _) => (0.0, 0.0, 0.0),
        (Scale::Full, Style::Jining) => (1.0, 0.25, 0.2),
        (Scale::Full, _) => (1.0, 1.0, 0.2),
    };
    let small = scale == Scale::Small;
    let tiers = if small {
        [communities * 2, communities * 2, 0, 0]
    } else {
        [
            per(template.grid_tiers[0], grid_factor),
            per(template.grid_tiers[1], grid_factor),
            per(template.grid_tiers[2], grid_factor * micro_factor.max(0.5)),
            per(template.grid_tiers[3], micro_factor),
        ]
    };
    let compounds = if small {
        communities * 2
    } else {
        per(template.compounds, 1.0)
    };
    let buildings = if small {
        compounds * 2
    } else {
        per(template.buildings, grid_factor)
    };
    let units = if small {
        buildings * 2
    } else {
        per(template.units, micro_factor)
    };
    let members = if small {
        communities * 12
    } else {
        per(template.party_members, member_factor)
    };
    DistrictPlan {
        code,
        name,
        streets: Box::leak(street_list.into_boxed_slice()),
        communities_per_street: Box::leak(vec![per_street; streets].into_boxed_slice()),
        special_communities: &[],
        compounds,
        old_compounds: compounds / 2,
        grid_tiers: tiers,
        buildings,
        units,
        grid_party_branches: tiers[0],
        party_orgs: if small {
            communities * 2
        } else {
            per(template.party_orgs, member_factor.max(0.5))
        },
        party_members: members,
        in_service_registered: members / 5,
        households_roles: [tiers[1], tiers[2], tiers[3]],
        heads: [tiers[0], compounds, buildings, units],
        service_centers: if small {
            communities
        } else {
            per(template.service_centers, 1.0)
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_has_twelve_cities_and_a_hundred_and_three_districts() {
        assert_eq!(CITIES.len(), 12);
        assert_eq!(DISTRICTS.len(), 103);
        for (code, _) in DISTRICTS {
            assert_ne!(city_of(code), "150000", "{code} belongs to a city");
        }
        let codes: std::collections::BTreeSet<_> = DISTRICTS.iter().map(|(c, _)| c).collect();
        assert_eq!(codes.len(), 103, "codes are unique");
    }

    #[test]
    fn generated_districts_are_deterministic_and_styled_in_turn() {
        let a = districts(103, Scale::Small);
        let b = districts(103, Scale::Small);
        assert_eq!(a.len(), 103);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.plan.code, y.plan.code);
            assert_eq!(x.plan.streets, y.plan.streets);
        }
        assert_eq!(a[0].style, Style::Huimin);
        assert_eq!(a[1].style, Style::Saihan);
        assert_eq!(a[2].style, Style::Jining);
        // Past 103: made-up districts under real cities, codes unique.
        let more = districts(300, Scale::Small);
        let codes: std::collections::BTreeSet<_> = more.iter().map(|d| d.plan.code).collect();
        assert_eq!(codes.len(), 300);
        assert!(more.iter().all(|d| d.city != "150000"));
    }
}
