//! Bad input, generated: the query parser, the cursor decoder and the
//! config loader never panic, and every refusal carries a stable code and
//! a message. Bounded runs (256 cases each) so `cargo xtask test` stays fast.

use std::path::Path;

use lianqiao_gateway::config::{ServerSection, load};
use lianqiao_gateway::disclosure::seal::CursorSeal;
use lianqiao_gateway::federation::cursor::{CursorState, SourcePosition};
use lianqiao_gateway::model::ENTITIES;
use proptest::prelude::*;

const CODES: &[&str] = &[
    "bad_request",
    "missing_parameter",
    "invalid_parameter",
    "unknown_field",
    "bad_cursor",
    "not_found",
];

/// Query strings built from the API's own vocabulary plus noise, so the
/// parser's deeper branches are reached, not just the first refusal.
fn query_string() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("division".to_string()),
        Just("parent".to_string()),
        Just("limit".to_string()),
        Just("cursor".to_string()),
        Just("fields".to_string()),
        Just("strict".to_string()),
        Just("tier[in]".to_string()),
        Just("households[gte]".to_string()),
        Just("name[prefix]".to_string()),
        Just("code[zz]".to_string()),
        "[a-z_\\[\\]%]{0,12}",
    ];
    let value = prop_oneof![
        Just("150103".to_string()),
        Just("150103001".to_string()),
        Just("50".to_string()),
        Just("small,big".to_string()),
        Just("true".to_string()),
        "\\PC{0,20}",
    ];
    proptest::collection::vec((key, value), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{}={}", k, urlencode(&v)))
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_query_parser_refuses_with_a_code_and_a_message(raw in query_string(), which in 0usize..7) {
        let entity = ENTITIES[which % ENTITIES.len()];
        let server = ServerSection::default();
        match lianqiao_gateway::api::parse_list(entity, Some(&raw), &server) {
            Ok(request) => {
                prop_assert!(!request.scope.is_empty());
                prop_assert!(request.limit >= 1 && request.limit <= server.max_page_size);
                prop_assert!(request.scope.iter().all(|c| c.bytes().all(|b| b.is_ascii_digit())));
            }
            Err(e) => {
                prop_assert!(CODES.contains(&e.code.as_str()), "{}", e.code);
                prop_assert!(!e.message.is_empty());
                prop_assert!(e.status.is_client_error());
            }
        }
    }

    #[test]
    fn the_cursor_seal_opens_only_what_it_sealed_for_that_caller(token in "\\PC{0,200}", key in proptest::collection::vec(any::<u8>(), 1..40)) {
        let seal = CursorSeal::new(&key);
        // Random text is never taken for a cursor.
        prop_assert!(seal.open(&token, "caller", "q").is_err());
        // A sealed cursor comes back whole, to its caller only; one changed
        // character does not; its positions cannot be read.
        let mut positions = std::collections::BTreeMap::new();
        positions.insert("s".to_string(), SourcePosition { cursor: Some(token.clone()), skip: 3 });
        let state = CursorState { fingerprint: "q".into(), positions, started: None };
        let sealed = seal.seal(&state, "caller");
        prop_assert_eq!(seal.open(&sealed, "caller", "q").ok(), Some(state));
        prop_assert!(seal.open(&sealed, "another caller", "q").is_err());
        if token.len() >= 8 && token.is_ascii() {
            prop_assert!(!sealed.contains(&token));
        }
        let mut bytes = sealed.into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8_lossy(&bytes).into_owned();
        prop_assert!(seal.open(&tampered, "caller", "q").is_err());
    }

    #[test]
    fn the_config_loader_reports_instead_of_panicking(text in "(\\[[a-z.]{1,12}\\]\\n|[a-z_]{1,12} = (\"[^\"\\n]{0,12}\"|[0-9]{1,6}|true|\\[\\])\\n|\\PC{0,10}\\n){0,12}") {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lianqiao.toml");
        std::fs::write(&file, &text).unwrap();
        match load(Path::new(&file)) {
            Ok(_) => {}
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    prop_assert!(!e.message.is_empty());
                    prop_assert!(e.file.ends_with("lianqiao.toml") || e.file.starts_with(dir.path()));
                }
            }
        }
    }
}
