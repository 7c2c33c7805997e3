//! The closed loop as configuration (`config/cases.toml`): which moves a
//! case can make. Who may make them is the policy's.

use serde::Deserialize;

use crate::model::{CASE_LOOPS, CASE_STATES};

/// The state a case is in before it exists (`from = ["new"]`: creation).
pub const NEW: &str = "new";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The source that takes whistled cases (the city platform's).
    #[serde(default)]
    whistle_to: Option<String>,
    /// How long a gateway holds an outbox row before another may take it
    /// over (seconds; longer than any one stage takes).
    #[serde(default)]
    saga_lease_s: Option<u64>,
    #[serde(rename = "move")]
    moves: Vec<Move>,
}

/// One allowed move.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub from: Vec<String>,
    pub to: String,
    pub loops: Vec<String>,
    /// Body fields the move needs (`satisfaction`, `note`).
    #[serde(default)]
    pub requires: Vec<String>,
}

/// What a move does to the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The state changes; the loop stays.
    Step,
    /// The loop rises one level and the state returns to `assessed`.
    Escalate,
    /// The street calls the city: a linked city case is opened.
    Whistle,
}

#[derive(Debug, Clone, Default)]
pub struct Transitions {
    moves: Vec<Move>,
    /// The source a street's whistle files the city case with.
    pub whistle_to: Option<String>,
    /// The saga's lease (`saga_lease_s`), when set.
    pub saga_lease: Option<std::time::Duration>,
}

impl Transitions {
    /// The table shipped in `config/cases.toml`.
    pub fn shipped() -> Transitions {
        // Checked by a test; an empty table refuses every move.
        Transitions::parse(include_str!("../../../config/cases.toml")).unwrap_or_default()
    }

    /// Parse and check a table: states, loops and fields from the model.
    pub fn parse(text: &str) -> Result<Transitions, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        for (i, m) in file.moves.iter().enumerate() {
            let at = format!("move[{i}]");
            for state in m.from.iter().chain([&m.to]) {
                if state != NEW && !CASE_STATES.contains(&state.as_str()) {
                    return Err(format!(
                        "{at}: `{state}` is not a state ({} or new)",
                        CASE_STATES.join(", ")
                    ));
                }
            }
            if m.to == NEW {
                return Err(format!("{at}: nothing moves back to `new`"));
            }
            if let Some(bad) = m.loops.iter().find(|l| !CASE_LOOPS.contains(&l.as_str())) {
                return Err(format!(
                    "{at}: `{bad}` is not a loop ({})",
                    CASE_LOOPS.join(", ")
                ));
            }
            if let Some(bad) = m
                .requires
                .iter()
                .find(|f| !matches!(f.as_str(), "satisfaction" | "note"))
            {
                return Err(format!(
                    "{at}: requires `{bad}`; a move can require satisfaction or note"
                ));
            }
            if m.to == "escalated" && m.loops.iter().any(|l| l == "street" || l == "city") {
                return Err(format!(
                    "{at}: escalation leaves the district from the street loop; whistle instead"
                ));
            }
        }
        Ok(Transitions {
            moves: file.moves,
            whistle_to: file.whistle_to,
            saga_lease: file.saga_lease_s.map(std::time::Duration::from_secs),
        })
    }

    /// The move from `from` to `to` in `case_loop`, if the table has it.
    pub fn find(&self, case_loop: &str, from: &str, to: &str) -> Option<&Move> {
        self.moves.iter().find(|m| {
            m.to == to && m.from.iter().any(|f| f == from) && m.loops.iter().any(|l| l == case_loop)
        })
    }

    /// Every state reachable from `from` in `case_loop`.
    pub fn from(&self, case_loop: &str, from: &str) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .moves
            .iter()
            .filter(|m| m.from.iter().any(|f| f == from) && m.loops.iter().any(|l| l == case_loop))
            .map(|m| m.to.as_str())
            .collect();
        out.dedup();
        out
    }

    pub fn effect(to: &str) -> Effect {
        match to {
            "escalated" => Effect::Escalate,
            "whistled" => Effect::Whistle,
            _ => Effect::Step,
        }
    }
}

/// The loop above `case_loop` inside the district.
pub fn loop_above(case_loop: &str) -> Option<&'static str> {
    match case_loop {
        "grid" => Some("community"),
        "community" => Some("street"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_walks_the_loop() {
        let t = Transitions::parse(include_str!("../../../config/cases.toml")).expect("parses");
        assert_eq!(t.from("grid", NEW), ["discovered"]);
        assert!(
            t.from("street", NEW).is_empty(),
            "streets do not open cases"
        );
        assert_eq!(
            t.from("grid", "assessed"),
            ["accepted", "escalated", "closed"]
        );
        assert_eq!(
            t.from("street", "assessed"),
            ["accepted", "whistled", "closed"]
        );
        assert_eq!(t.from("city", "accepted"), ["reported_in"]);
        assert_eq!(
            t.find("grid", "feedback", "evaluated")
                .map(|m| m.requires.clone()),
            Some(vec!["satisfaction".to_string()])
        );
        assert!(t.find("grid", "closed", "assessed").is_none());
    }

    #[test]
    fn bad_tables_say_what_is_wrong() {
        let bad = |text: &str| Transitions::parse(text).unwrap_err();
        assert!(
            bad("[[move]]\nfrom = [\"open\"]\nto = \"closed\"\nloops = [\"grid\"]")
                .contains("`open` is not a state")
        );
        assert!(
            bad("[[move]]\nfrom = [\"assessed\"]\nto = \"closed\"\nloops = [\"town\"]")
                .contains("`town` is not a loop")
        );
        assert!(
            bad("[[move]]\nfrom = [\"assessed\"]\nto = \"escalated\"\nloops = [\"street\"]")
                .contains("whistle instead")
        );
    }
}
