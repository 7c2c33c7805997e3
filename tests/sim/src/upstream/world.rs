//! Everything the simulators serve, generated once from a seed.

use crate::generate::city::{self, Case, ServiceCenter};
use crate::generate::{District, People, district_with_people, plans};

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
