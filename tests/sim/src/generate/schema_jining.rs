//! Jining's own schema (MariaDB in production, SQLite in the demo):
//! integer ids with code columns beside them, parents by id, Chinese
//! level names (区/街道/社区/网格, 大/中/小/微), sex as 男/女, and the
//! "three households" and "four heads" in tables of their own.

use std::collections::HashMap;

use sqlx::AnyConnection;

use super::bulk::{ddl, insert};
use super::district::{GridTier, Level};
use super::people::{HouseholdRole, WorkerRole};
use super::{District, People};

const SCHEMA: &str = r#"
DROP TABLE IF EXISTS t_event_log;
DROP TABLE IF EXISTS t_event;
DROP TABLE IF EXISTS t_head;
DROP TABLE IF EXISTS t_person_role;
DROP TABLE IF EXISTS t_unit;
DROP TABLE IF EXISTS t_building;
DROP TABLE IF EXISTS t_compound;
DROP TABLE IF EXISTS t_grid;
DROP TABLE IF EXISTS t_area;
CREATE TABLE t_area (
    id         INTEGER PRIMARY KEY,
    area_code  VARCHAR(32) NOT NULL UNIQUE,
    area_name  VARCHAR(128) NOT NULL,
    area_level VARCHAR(8) NOT NULL,
    parent_id  INTEGER,
    hu_shu     INTEGER,
    ren_kou    INTEGER
);
CREATE TABLE t_grid (
    id         INTEGER PRIMARY KEY,
    area_id    INTEGER NOT NULL UNIQUE,
    grid_code  VARCHAR(32) NOT NULL UNIQUE,
    grid_level VARCHAR(4) NOT NULL,
    sq_id      INTEGER NOT NULL,
    hu_shu     INTEGER NOT NULL,
    wgz_id     INTEGER,
    dzb_code   VARCHAR(32)
);
CREATE TABLE t_compound (
    id         INTEGER PRIMARY KEY,
    code       VARCHAR(32) NOT NULL,
    name       VARCHAR(128) NOT NULL,
    sq_id      INTEGER NOT NULL,
    grid_id    INTEGER,
    is_old     INTEGER NOT NULL,
    built_year INTEGER
);
CREATE TABLE t_building (
    id          INTEGER PRIMARY KEY,
    code        VARCHAR(32) NOT NULL,
    name        VARCHAR(128) NOT NULL,
    compound_id INTEGER NOT NULL,
    grid_id     INTEGER NOT NULL,
    floors      INTEGER NOT NULL
);
CREATE TABLE t_unit (
    id          INTEGER PRIMARY KEY,
    code        VARCHAR(40) NOT NULL,
    name        VARCHAR(32) NOT NULL,
    building_id INTEGER NOT NULL,
    hu_shu      INTEGER NOT NULL
);
CREATE TABLE t_person_role (
    id          INTEGER PRIMARY KEY,
    sfzh        VARCHAR(18) NOT NULL,
    xm          VARCHAR(64) NOT NULL,
    xb          VARCHAR(2) NOT NULL,
    role_type   VARCHAR(8),
    grid_id     INTEGER NOT NULL,
    building_id INTEGER,
    unit_id     INTEGER
);
CREATE TABLE t_head (
    id         INTEGER PRIMARY KEY,
    xm         VARCHAR(64) NOT NULL,
    xb         VARCHAR(2) NOT NULL,
    lxdh       VARCHAR(16) NOT NULL,
    head_type  VARCHAR(8) NOT NULL,
    grid_id    INTEGER,
    post_code  VARCHAR(40) NOT NULL,
    is_dy      INTEGER NOT NULL,
    since_date VARCHAR(10) NOT NULL
);
CREATE TABLE t_event (
    ajbh  VARCHAR(64) PRIMARY KEY,
    bt    VARCHAR(128) NOT NULL,
    lb    VARCHAR(32) NOT NULL,
    clcj  VARCHAR(8) NOT NULL,
    ajzt  INTEGER NOT NULL,
    grid_id INTEGER NOT NULL,
    fyr   VARCHAR(64),
    fyrdh VARCHAR(16),
    fxsj  VARCHAR(32) NOT NULL,
    gxsj  VARCHAR(32) NOT NULL,
    qxsj  VARCHAR(32),
    myd   INTEGER,
    sjbh  VARCHAR(40)
);
CREATE TABLE t_event_log (
    lsh  VARCHAR(64) PRIMARY KEY,
    ajbh VARCHAR(64) NOT NULL,
    ajzt INTEGER NOT NULL,
    clcj VARCHAR(8) NOT NULL,
    czsj VARCHAR(32) NOT NULL,
    czcj VARCHAR(16) NOT NULL,
    bz   VARCHAR(256)
);
CREATE INDEX t_event_grid ON t_event(grid_id, ajbh);
CREATE INDEX t_event_log_ajbh ON t_event_log(ajbh, czsj)
"#;

/// Jining's loop names (处理层级).
pub fn loop_name(unified: &str) -> &'static str {
    match unified {
        "grid" => "网格",
        "community" => "社区",
        "street" => "街道",
        _ => "市",
    }
}

/// Jining's state codes (案件状态), in steps of ten.
pub fn state_code(unified: &str) -> i64 {
    match unified {
        "discovered" => 10,
        "assessed" => 20,
        "whistled" => 30,
        "accepted" => 40,
        "reported_in" => 50,
        "feedback" => 60,
        "evaluated" => 70,
        "escalated" => 80,
        _ => 90,
    }
}

fn level(level: Level) -> &'static str {
    match level {
        Level::District => "区",
        Level::Street => "街道",
        Level::Community => "社区",
        Level::Grid => "网格",
    }
}

fn tier(tier: GridTier) -> &'static str {
    match tier {
        GridTier::Big => "大",
        GridTier::Medium => "中",
        GridTier::Small => "小",
        GridTier::Micro => "微",
    }
}

fn sex(male: bool) -> &'static str {
    if male { "男" } else { "女" }
}

pub async fn write(
    conn: &mut AnyConnection,
    district: &District,
    people: &People,
) -> anyhow::Result<()> {
    ddl(conn, SCHEMA).await?;
    // Integer ids in insertion order, codes beside them.
    let mut area_id: HashMap<&str, i64> = HashMap::new();
    let mut areas = Vec::new();
    let all = district
        .divisions
        .iter()
        .map(|d| {
            (
                &d.code,
                &d.name,
                level(d.level),
                d.parent.as_ref(),
                d.households,
                d.population,
            )
        })
        .chain(district.grids.iter().map(|g| {
            (
                &g.code,
                &g.name,
                "网格",
                Some(&g.parent),
                g.households,
                g.households * 255 / 100,
            )
        }));
    for (code, name, lvl, parent, households, population) in all {
        let id = areas.len() as i64 + 1;
        area_id.insert(code.as_str(), id);
        let parent_id = parent.and_then(|p| area_id.get(p.as_str()).copied());
        areas.push(vec![
            id.into(),
            code.into(),
            name.into(),
            lvl.into(),
            parent_id.into(),
            households.into(),
            population.into(),
        ]);
    }
    insert(
        conn,
        "t_area",
        &[
            "id",
            "area_code",
            "area_name",
            "area_level",
            "parent_id",
            "hu_shu",
            "ren_kou",
        ],
        areas,
    )
    .await?;

    let head_id: HashMap<&str, i64> = people
        .heads
        .iter()
        .enumerate()
        .filter(|(_, h)| h.role == WorkerRole::GridHead)
        .map(|(i, h)| (h.post_of.as_str(), i as i64 + 1))
        .collect();
    let mut grid_id: HashMap<&str, i64> = HashMap::new();
    let mut grids = Vec::new();
    for (i, g) in district.grids.iter().enumerate() {
        let id = i as i64 + 1;
        grid_id.insert(g.code.as_str(), id);
        grids.push(vec![
            id.into(),
            area_id.get(g.code.as_str()).copied().into(),
            (&g.code).into(),
            tier(g.tier).into(),
            area_id.get(g.community.as_str()).copied().into(),
            g.households.into(),
            head_id.get(g.code.as_str()).copied().into(),
            g.party_branch.as_ref().into(),
        ]);
    }
    insert(
        conn,
        "t_grid",
        &[
            "id",
            "area_id",
            "grid_code",
            "grid_level",
            "sq_id",
            "hu_shu",
            "wgz_id",
            "dzb_code",
        ],
        grids,
    )
    .await?;

    let mut compound_id: HashMap<&str, i64> = HashMap::new();
    let mut compounds = Vec::new();
    for (i, c) in district.compounds.iter().enumerate() {
        let id = i as i64 + 1;
        compound_id.insert(c.code.as_str(), id);
        compounds.push(vec![
            id.into(),
            (&c.code).into(),
            (&c.name).into(),
            area_id.get(c.community.as_str()).copied().into(),
            grid_id.get(c.grid.as_str()).copied().into(),
            i64::from(c.is_old).into(),
            c.built_year.into(),
        ]);
    }
    insert(
        conn,
        "t_compound",
        &[
            "id",
            "code",
            "name",
            "sq_id",
            "grid_id",
            "is_old",
            "built_year",
        ],
        compounds,
    )
    .await?;

    let mut building_id: HashMap<&str, i64> = HashMap::new();
    let mut buildings = Vec::new();
    for (i, b) in district.buildings.iter().enumerate() {
        let id = i as i64 + 1;
        building_id.insert(b.code.as_str(), id);
        buildings.push(vec![
            id.into(),
            (&b.code).into(),
            (&b.name).into(),
            compound_id.get(b.compound.as_str()).copied().into(),
            grid_id.get(b.grid.as_str()).copied().into(),
            b.floors.into(),
        ]);
    }
    insert(
        conn,
        "t_building",
        &["id", "code", "name", "compound_id", "grid_id", "floors"],
        buildings,
    )
    .await?;

    let mut unit_id: HashMap<&str, i64> = HashMap::new();
    let mut units = Vec::new();
    for (i, u) in district.units.iter().enumerate() {
        let id = i as i64 + 1;
        unit_id.insert(u.code.as_str(), id);
        units.push(vec![
            id.into(),
            (&u.code).into(),
            (&u.name).into(),
            building_id.get(u.building.as_str()).copied().into(),
            u.households.into(),
        ]);
    }
    insert(
        conn,
        "t_unit",
        &["id", "code", "name", "building_id", "hu_shu"],
        units,
    )
    .await?;

    let role = |r: HouseholdRole| match r {
        HouseholdRole::Central => "中心户",
        HouseholdRole::Bastion => "堡垒户",
        HouseholdRole::Vanguard => "先锋户",
    };
    let roles = people
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            vec![
                (i as i64 + 1).into(),
                (&m.id_number).into(),
                (&m.name).into(),
                sex(m.male).into(),
                m.household_role.map(|r| role(r).to_string()).into(),
                grid_id.get(m.grid.as_str()).copied().unwrap_or(0).into(),
                m.building
                    .as_ref()
                    .and_then(|b| building_id.get(b.as_str()).copied())
                    .into(),
                m.unit
                    .as_ref()
                    .and_then(|u| unit_id.get(u.as_str()).copied())
                    .into(),
            ]
        })
        .collect();
    insert(
        conn,
        "t_person_role",
        &[
            "id",
            "sfzh",
            "xm",
            "xb",
            "role_type",
            "grid_id",
            "building_id",
            "unit_id",
        ],
        roles,
    )
    .await?;

    let head_type = |r: WorkerRole| match r {
        WorkerRole::GridHead => "网格长",
        WorkerRole::CompoundHead => "院落长",
        WorkerRole::BuildingHead => "楼栋长",
        WorkerRole::UnitHead => "单元长",
    };
    let heads = people
        .heads
        .iter()
        .enumerate()
        .map(|(i, h)| {
            vec![
                (i as i64 + 1).into(),
                (&h.name).into(),
                sex(h.male).into(),
                (&h.phone).into(),
                head_type(h.role).into(),
                grid_id.get(h.grid.as_str()).copied().into(),
                (&h.post_of).into(),
                i64::from(h.is_party_member).into(),
                (&h.since).into(),
            ]
        })
        .collect();
    insert(
        conn,
        "t_head",
        &[
            "id",
            "xm",
            "xb",
            "lxdh",
            "head_type",
            "grid_id",
            "post_code",
            "is_dy",
            "since_date",
        ],
        heads,
    )
    .await?;
    let cases = super::cases::cases(district);
    let events = cases
        .iter()
        .map(|c| {
            vec![
                (&c.id).into(),
                c.title.into(),
                c.category.into(),
                loop_name(c.loop_level).into(),
                state_code(c.state).into(),
                grid_id
                    .get(c.division.as_str())
                    .copied()
                    .unwrap_or(0)
                    .into(),
                (&c.reporter_name).into(),
                (&c.reporter_phone).into(),
                (&c.opened_at).into(),
                (&c.updated_at).into(),
                (&c.due_at).into(),
                c.satisfaction.into(),
                super::bulk::Cell::NullText,
            ]
        })
        .collect();
    insert(
        conn,
        "t_event",
        &[
            "ajbh", "bt", "lb", "clcj", "ajzt", "grid_id", "fyr", "fyrdh", "fxsj", "gxsj", "qxsj",
            "myd", "sjbh",
        ],
        events,
    )
    .await?;
    let log = cases
        .iter()
        .flat_map(|c| {
            c.steps.iter().map(|s| {
                vec![
                    (&s.id).into(),
                    (&c.id).into(),
                    state_code(s.state).into(),
                    loop_name(s.loop_level).into(),
                    (&s.at).into(),
                    s.by_level.into(),
                    s.note.clone().into(),
                ]
            })
        })
        .collect();
    insert(
        conn,
        "t_event_log",
        &["lsh", "ajbh", "ajzt", "clcj", "czsj", "czcj", "bz"],
        log,
    )
    .await?;
    Ok(())
}
