//! Everything the simulators serve, generated once from a seed.

use crate::generate::city::{self, Case, ServiceCenter};
use crate::generate::{District, People, district_with_people, plans, region};

pub struct DistrictData {
    /// GB/T 2260 code of the city (150100 Hohhot, 150900 Ulanqab).
    pub city: &'static str,
    pub district: District,
    pub people: People,
    pub cases: Vec<Case>,
    pub centers: Vec<ServiceCenter>,
}

pub struct World {
    pub districts: Vec<DistrictData>,
}

impl World {
    /// The region's first `count` districts (`generate::region`), or only
    /// those of `city` (a city platform's own world).
    pub fn region(seed: u64, count: usize, scale: region::Scale, city: Option<&str>) -> World {
        let districts = region::districts(count, scale)
            .into_iter()
            .filter(|d| city.is_none_or(|c| c == d.city))
            .map(|d| {
                let (district, people) = district_with_people(&d.plan, seed);
                DistrictData {
                    city: d.city,
                    cases: city::cases(&d.plan, &district, seed),
                    centers: city::service_centers(&d.plan, &district),
                    district,
                    people,
                }
            })
            .collect();
        World { districts }
    }

    pub fn generate(seed: u64) -> World {
        let districts = plans::ALL
            .iter()
            .map(|(city, plan)| {
                let (district, people) = district_with_people(plan, seed);
                DistrictData {
                    city,
                    cases: city::cases(plan, &district, seed),
                    centers: city::service_centers(plan, &district),
                    district,
                    people,
                }
            })
            .collect();
        World { districts }
    }
}
