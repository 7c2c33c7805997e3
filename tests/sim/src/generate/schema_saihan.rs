//! Saihan's own schema (PostgreSQL in production, SQLite in the demo):
//! English names unlike Huimin's, grid tiers in a table of their own, sex
//! coded 1/2, "estates", "blocks" and "stairs" for compounds, buildings
//! and units.

use sqlx::AnyConnection;

use super::bulk::{Cell, ddl, insert};
use super::district::{GridTier, Level};
use super::{District, People};

const SCHEMA: &str = r#"
DROP TABLE IF EXISTS event_ticket_log;
DROP TABLE IF EXISTS event_ticket;
DROP TABLE IF EXISTS grid_staff;
DROP TABLE IF EXISTS resident_member;
DROP TABLE IF EXISTS stair;
DROP TABLE IF EXISTS block;
DROP TABLE IF EXISTS estate;
DROP TABLE IF EXISTS grid_cell;
DROP TABLE IF EXISTS grid_tier;
DROP TABLE IF EXISTS org_unit;
CREATE TABLE org_unit (
    unit_code        VARCHAR(32) PRIMARY KEY,
    unit_name        VARCHAR(128) NOT NULL,
    unit_type        CHAR(1) NOT NULL,
    parent_unit_code VARCHAR(32),
    household_count  INTEGER,
    resident_count   INTEGER
);
CREATE TABLE grid_tier (
    tier_id   INTEGER PRIMARY KEY,
    tier_name VARCHAR(16) NOT NULL
);
CREATE TABLE grid_cell (
    cell_code       VARCHAR(32) PRIMARY KEY,
    tier_id         INTEGER NOT NULL REFERENCES grid_tier(tier_id),
    community_code  VARCHAR(32) NOT NULL,
    household_count INTEGER NOT NULL,
    head_id         VARCHAR(32),
    branch_id       VARCHAR(32)
);
CREATE TABLE estate (
    estate_code    VARCHAR(32) PRIMARY KEY,
    estate_name    VARCHAR(128) NOT NULL,
    community_code VARCHAR(32) NOT NULL,
    cell_code      VARCHAR(32),
    old_estate     INTEGER NOT NULL,
    built_in       INTEGER
);
CREATE TABLE block (
    block_code  VARCHAR(32) PRIMARY KEY,
    estate_code VARCHAR(32) NOT NULL,
    cell_code   VARCHAR(32) NOT NULL,
    block_name  VARCHAR(128) NOT NULL,
    storeys     INTEGER NOT NULL
);
CREATE TABLE stair (
    stair_code      VARCHAR(40) PRIMARY KEY,
    block_code      VARCHAR(32) NOT NULL,
    stair_name      VARCHAR(32) NOT NULL,
    household_count INTEGER NOT NULL
);
CREATE TABLE resident_member (
    id_card        VARCHAR(18) PRIMARY KEY,
    full_name      VARCHAR(64) NOT NULL,
    sex            INTEGER NOT NULL,
    cell_code      VARCHAR(32) NOT NULL,
    block_code     VARCHAR(32),
    stair_code     VARCHAR(40),
    household_role VARCHAR(16)
);
CREATE TABLE grid_staff (
    staff_id     VARCHAR(32) PRIMARY KEY,
    full_name    VARCHAR(64) NOT NULL,
    sex          INTEGER NOT NULL,
    mobile       VARCHAR(16) NOT NULL,
    duty         VARCHAR(16) NOT NULL,
    cell_code    VARCHAR(32) NOT NULL,
    post_of      VARCHAR(40) NOT NULL,
    party_member INTEGER NOT NULL,
    since_date   VARCHAR(10) NOT NULL
);
CREATE TABLE event_ticket (
    ticket_id       VARCHAR(64) PRIMARY KEY,
    subject         VARCHAR(128) NOT NULL,
    kind            VARCHAR(32) NOT NULL,
    loop_code       INTEGER NOT NULL,
    stage           VARCHAR(16) NOT NULL,
    cell_code       VARCHAR(32) NOT NULL,
    reporter_name   VARCHAR(64),
    reporter_mobile VARCHAR(16),
    created_at      VARCHAR(32) NOT NULL,
    changed_at      VARCHAR(32) NOT NULL,
    deadline        VARCHAR(32),
    rating          INTEGER,
    city_ref        VARCHAR(40)
);
CREATE TABLE event_ticket_log (
    log_id      VARCHAR(64) PRIMARY KEY,
    ticket_id   VARCHAR(64) NOT NULL,
    stage       VARCHAR(16) NOT NULL,
    loop_code   INTEGER NOT NULL,
    logged_at   VARCHAR(32) NOT NULL,
    actor_level VARCHAR(16) NOT NULL,
    remark      VARCHAR(256)
);
CREATE INDEX event_ticket_cell ON event_ticket(cell_code, ticket_id);
CREATE INDEX event_ticket_log_ticket ON event_ticket_log(ticket_id, logged_at);
CREATE INDEX org_unit_parent ON org_unit(parent_unit_code)
"#;

/// Saihan numbers its loops 1–4 and names stages in capitals.
pub fn loop_code(unified: &str) -> i64 {
    match unified {
        "grid" => 1,
        "community" => 2,
        "street" => 3,
        _ => 4,
    }
}

pub fn stage(unified: &str) -> String {
    match unified {
        "reported_in" => "REPORTED".into(),
        other => other.to_uppercase(),
    }
}

/// 大网格 … 微网格, ids 1–4.
const TIERS: [(i64, &str, GridTier); 4] = [
    (1, "大网格", GridTier::Big),
    (2, "中网格", GridTier::Medium),
    (3, "小网格", GridTier::Small),
    (4, "微网格", GridTier::Micro),
];

fn unit_type(level: Level) -> &'static str {
    match level {
        Level::District => "D",
        Level::Street => "S",
        Level::Community => "C",
        Level::Grid => "G",
    }
}

pub async fn write(
    conn: &mut AnyConnection,
    district: &District,
    people: &People,
) -> anyhow::Result<()> {
    ddl(conn, SCHEMA).await?;
    let mut units: Vec<Vec<Cell>> = district
        .divisions
        .iter()
        .map(|d| {
            vec![
                (&d.code).into(),
                (&d.name).into(),
                unit_type(d.level).into(),
                d.parent.as_ref().into(),
                d.households.into(),
                d.population.into(),
            ]
        })
        .collect();
    units.extend(district.grids.iter().map(|g| {
        vec![
            (&g.code).into(),
            (&g.name).into(),
            "G".into(),
            (&g.parent).into(),
            g.households.into(),
            (g.households * 255 / 100).into(),
        ]
    }));
    insert(
        conn,
        "org_unit",
        &[
            "unit_code",
            "unit_name",
            "unit_type",
            "parent_unit_code",
            "household_count",
            "resident_count",
        ],
        units,
    )
    .await?;
    insert(
        conn,
        "grid_tier",
        &["tier_id", "tier_name"],
        TIERS
            .iter()
            .map(|(id, name, _)| vec![(*id).into(), (*name).into()])
            .collect(),
    )
    .await?;
    let head_of = |grid: &str| {
        people
            .heads
            .iter()
            .find(|h| h.role == super::people::WorkerRole::GridHead && h.post_of == grid)
            .map(|h| h.id.clone())
    };
    let cells = district
        .grids
        .iter()
        .map(|g| {
            let tier = TIERS.iter().find(|t| t.2 == g.tier).map_or(1, |t| t.0);
            vec![
                (&g.code).into(),
                tier.into(),
                (&g.community).into(),
                g.households.into(),
                head_of(&g.code).into(),
                g.party_branch.as_ref().into(),
            ]
        })
        .collect();
    insert(
        conn,
        "grid_cell",
        &[
            "cell_code",
            "tier_id",
            "community_code",
            "household_count",
            "head_id",
            "branch_id",
        ],
        cells,
    )
    .await?;
    let estates = district
        .compounds
        .iter()
        .map(|c| {
            vec![
                (&c.code).into(),
                (&c.name).into(),
                (&c.community).into(),
                (&c.grid).into(),
                i64::from(c.is_old).into(),
                c.built_year.into(),
            ]
        })
        .collect();
    insert(
        conn,
        "estate",
        &[
            "estate_code",
            "estate_name",
            "community_code",
            "cell_code",
            "old_estate",
            "built_in",
        ],
        estates,
    )
    .await?;
    let blocks = district
        .buildings
        .iter()
        .map(|b| {
            vec![
                (&b.code).into(),
                (&b.compound).into(),
                (&b.grid).into(),
                (&b.name).into(),
                b.floors.into(),
            ]
        })
        .collect();
    insert(
        conn,
        "block",
        &[
            "block_code",
            "estate_code",
            "cell_code",
            "block_name",
            "storeys",
        ],
        blocks,
    )
    .await?;
    let stairs = district
        .units
        .iter()
        .map(|u| {
            vec![
                (&u.code).into(),
                (&u.building).into(),
                (&u.name).into(),
                u.households.into(),
            ]
        })
        .collect();
    insert(
        conn,
        "stair",
        &["stair_code", "block_code", "stair_name", "household_count"],
        stairs,
    )
    .await?;
    let members = people
        .members
        .iter()
        .map(|m| {
            vec![
                (&m.id_number).into(),
                (&m.name).into(),
                (if m.male { 1i64 } else { 2 }).into(),
                (&m.grid).into(),
                m.building.as_ref().into(),
                m.unit.as_ref().into(),
                m.household_role.map(|r| r.as_str().to_string()).into(),
            ]
        })
        .collect();
    insert(
        conn,
        "resident_member",
        &[
            "id_card",
            "full_name",
            "sex",
            "cell_code",
            "block_code",
            "stair_code",
            "household_role",
        ],
        members,
    )
    .await?;
    let staff = people
        .heads
        .iter()
        .map(|h| {
            vec![
                (&h.id).into(),
                (&h.name).into(),
                (if h.male { 1i64 } else { 2 }).into(),
                (&h.phone).into(),
                h.role.as_str().into(),
                (&h.grid).into(),
                (&h.post_of).into(),
                i64::from(h.is_party_member).into(),
                (&h.since).into(),
            ]
        })
        .collect();
    insert(
        conn,
        "grid_staff",
        &[
            "staff_id",
            "full_name",
            "sex",
            "mobile",
            "duty",
            "cell_code",
            "post_of",
            "party_member",
            "since_date",
        ],
        staff,
    )
    .await?;
    let cases = super::cases::cases(district);
    let tickets = cases
        .iter()
        .map(|c| {
            vec![
                (&c.id).into(),
                c.title.into(),
                c.category.into(),
                loop_code(c.loop_level).into(),
                stage(c.state).into(),
                (&c.division).into(),
                (&c.reporter_name).into(),
                (&c.reporter_phone).into(),
                (&c.opened_at).into(),
                (&c.updated_at).into(),
                (&c.due_at).into(),
                c.satisfaction.into(),
                Cell::NullText,
            ]
        })
        .collect();
    insert(
        conn,
        "event_ticket",
        &[
            "ticket_id",
            "subject",
            "kind",
            "loop_code",
            "stage",
            "cell_code",
            "reporter_name",
            "reporter_mobile",
            "created_at",
            "changed_at",
            "deadline",
            "rating",
            "city_ref",
        ],
        tickets,
    )
    .await?;
    let log = cases
        .iter()
        .flat_map(|c| {
            c.steps.iter().map(|s| {
                vec![
                    (&s.id).into(),
                    (&c.id).into(),
                    stage(s.state).into(),
                    loop_code(s.loop_level).into(),
                    (&s.at).into(),
                    s.by_level.into(),
                    s.note.clone().into(),
                ]
            })
        })
        .collect();
    insert(
        conn,
        "event_ticket_log",
        &[
            "log_id",
            "ticket_id",
            "stage",
            "loop_code",
            "logged_at",
            "actor_level",
            "remark",
        ],
        log,
    )
    .await?;
    Ok(())
}
