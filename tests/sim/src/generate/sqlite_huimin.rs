//! Huimin's own schema, in SQLite: one `division` table for the whole
//! hierarchy down to grids, a `grid` table for grid detail, and compounds,
//! buildings and units below. Other districts keep other schemas.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, Executor, SqliteConnection};

use super::people::HouseholdRole;
use super::{District, People};

/// Huimin's names for the loops and states.
pub const LOOPS: [(&str, &str); 4] = [
    ("网格", "grid"),
    ("社区", "community"),
    ("街道", "street"),
    ("市级", "city"),
];
pub const STATES: [(&str, &str); 9] = [
    ("发现", "discovered"),
    ("研判", "assessed"),
    ("吹哨", "whistled"),
    ("受理", "accepted"),
    ("报到", "reported_in"),
    ("反馈", "feedback"),
    ("评价", "evaluated"),
    ("上报", "escalated"),
    ("办结", "closed"),
];

fn local(names: &[(&'static str, &'static str)], unified: &str) -> &'static str {
    names
        .iter()
        .find(|(_, u)| *u == unified)
        .map_or("?", |(l, _)| l)
}

const SCHEMA: &str = r#"
CREATE TABLE division (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    level       TEXT NOT NULL,      -- district | street | community | grid
    parent_code TEXT,
    households  INTEGER,
    population  INTEGER
);
CREATE TABLE grid (
    code            TEXT PRIMARY KEY REFERENCES division(code),
    tier            TEXT NOT NULL,  -- big | medium | small | micro
    community_code  TEXT NOT NULL REFERENCES division(code),
    households      INTEGER NOT NULL,
    head_worker_id  TEXT,
    party_branch_id TEXT
);
CREATE TABLE compound (
    code           TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    community_code TEXT NOT NULL REFERENCES division(code),
    grid_code      TEXT REFERENCES grid(code),
    is_old         INTEGER NOT NULL,
    built_year     INTEGER
);
CREATE TABLE building (
    code          TEXT PRIMARY KEY,
    compound_code TEXT NOT NULL REFERENCES compound(code),
    grid_code     TEXT NOT NULL REFERENCES grid(code),
    name          TEXT NOT NULL,
    floors        INTEGER NOT NULL
);
CREATE TABLE unit (
    code          TEXT PRIMARY KEY,
    building_code TEXT NOT NULL REFERENCES building(code),
    name          TEXT NOT NULL,
    households    INTEGER NOT NULL
);
CREATE TABLE party_member_home (
    id_number      TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    grid_code      TEXT NOT NULL,
    building_code  TEXT,
    unit_code      TEXT,
    household_role TEXT            -- 中心户 | 堡垒户 | 先锋户
);
CREATE TABLE head (
    head_id      TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    gender       TEXT NOT NULL,     -- M | F
    phone        TEXT NOT NULL,
    post         TEXT NOT NULL,     -- grid_head | compound_head | building_head | unit_head
    grid_code    TEXT NOT NULL,
    post_of      TEXT NOT NULL,
    party_member INTEGER NOT NULL,
    since        TEXT NOT NULL
);
-- Problems the grid, community and street handle (Chinese state and loop
-- names, as the district's own system shows them).
CREATE TABLE problem_case (
    case_no      TEXT PRIMARY KEY,
    title        TEXT NOT NULL,
    category     TEXT NOT NULL,
    loop_level   TEXT NOT NULL,     -- 网格 | 社区 | 街道 | 市级
    status       TEXT NOT NULL,     -- 发现 | 研判 | 吹哨 | 受理 | 报到 | 反馈 | 评价 | 上报 | 办结
    grid_code    TEXT NOT NULL,
    reporter     TEXT,
    reporter_tel TEXT,
    opened       TEXT NOT NULL,
    updated      TEXT NOT NULL,
    due          TEXT,
    satisfaction INTEGER,
    city_case_no TEXT
);
CREATE TABLE problem_case_step (
    step_no    TEXT PRIMARY KEY,
    case_no    TEXT NOT NULL REFERENCES problem_case(case_no),
    status     TEXT NOT NULL,
    loop_level TEXT NOT NULL,
    at         TEXT NOT NULL,
    by_level   TEXT NOT NULL,
    note       TEXT
);
CREATE INDEX problem_case_grid ON problem_case(grid_code, case_no);
CREATE INDEX problem_case_step_case ON problem_case_step(case_no, at);
CREATE INDEX division_parent ON division(parent_code);
CREATE INDEX party_member_home_grid ON party_member_home(grid_code);
CREATE INDEX grid_community ON grid(community_code);
"#;

/// Write `district` to a new SQLite file at `path` (replacing any file).
pub async fn write(district: &District, people: &People, path: &Path) -> anyhow::Result<()> {
    let cases = super::cases::cases(district);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    for stale in [
        path.to_path_buf(),
        path.with_extension("sqlite-wal"),
        path.with_extension("sqlite-shm"),
    ] {
        if stale.exists() {
            std::fs::remove_file(stale)?;
        }
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // A single file the gateway opens read-only: no WAL side files.
        .journal_mode(SqliteJournalMode::Delete);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    conn.execute(SCHEMA).await?;
    let mut tx = conn.begin().await?;

    for d in &district.divisions {
        sqlx::query("INSERT INTO division VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&d.code)
            .bind(&d.name)
            .bind(d.level.as_str())
            .bind(&d.parent)
            .bind(d.households)
            .bind(d.population)
            .execute(&mut *tx)
            .await?;
    }
    for g in &district.grids {
        sqlx::query("INSERT INTO division VALUES (?, ?, 'grid', ?, ?, ?)")
            .bind(&g.code)
            .bind(&g.name)
            .bind(&g.parent)
            .bind(g.households)
            .bind(g.households * 255 / 100)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO grid VALUES (?, ?, ?, ?, NULL, ?)")
            .bind(&g.code)
            .bind(g.tier.as_str())
            .bind(&g.community)
            .bind(g.households)
            .bind(&g.party_branch)
            .execute(&mut *tx)
            .await?;
    }
    for c in &district.compounds {
        sqlx::query("INSERT INTO compound VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&c.code)
            .bind(&c.name)
            .bind(&c.community)
            .bind(&c.grid)
            .bind(c.is_old)
            .bind(c.built_year)
            .execute(&mut *tx)
            .await?;
    }
    for b in &district.buildings {
        sqlx::query("INSERT INTO building VALUES (?, ?, ?, ?, ?)")
            .bind(&b.code)
            .bind(&b.compound)
            .bind(&b.grid)
            .bind(&b.name)
            .bind(b.floors)
            .execute(&mut *tx)
            .await?;
    }
    for u in &district.units {
        sqlx::query("INSERT INTO unit VALUES (?, ?, ?, ?)")
            .bind(&u.code)
            .bind(&u.building)
            .bind(&u.name)
            .bind(u.households)
            .execute(&mut *tx)
            .await?;
    }
    for m in &people.members {
        let role = m.household_role.map(|r| match r {
            HouseholdRole::Central => "中心户",
            HouseholdRole::Bastion => "堡垒户",
            HouseholdRole::Vanguard => "先锋户",
        });
        sqlx::query("INSERT INTO party_member_home VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&m.id_number)
            .bind(&m.name)
            .bind(&m.grid)
            .bind(&m.building)
            .bind(&m.unit)
            .bind(role)
            .execute(&mut *tx)
            .await?;
    }
    for h in &people.heads {
        sqlx::query("INSERT INTO head VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(&h.id)
            .bind(&h.name)
            .bind(if h.male { "M" } else { "F" })
            .bind(&h.phone)
            .bind(h.role.as_str())
            .bind(&h.grid)
            .bind(&h.post_of)
            .bind(h.is_party_member)
            .bind(&h.since)
            .execute(&mut *tx)
            .await?;
    }
    for c in &cases {
        sqlx::query("INSERT INTO problem_case VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)")
            .bind(&c.id)
            .bind(c.title)
            .bind(c.category)
            .bind(local(&LOOPS, c.loop_level))
            .bind(local(&STATES, c.state))
            .bind(&c.division)
            .bind(&c.reporter_name)
            .bind(&c.reporter_phone)
            .bind(&c.opened_at)
            .bind(&c.updated_at)
            .bind(&c.due_at)
            .bind(c.satisfaction)
            .execute(&mut *tx)
            .await?;
        for s in &c.steps {
            sqlx::query("INSERT INTO problem_case_step VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(&s.id)
                .bind(&c.id)
                .bind(local(&STATES, s.state))
                .bind(local(&LOOPS, s.loop_level))
                .bind(&s.at)
                .bind(s.by_level)
                .bind(&s.note)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(())
}
