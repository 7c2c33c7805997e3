//! The policy crate against the shipped schema and policy, and against
//! broken ones.

use std::path::PathBuf;
use std::sync::Arc;

use lianqiao_policy::authn::{self, ApiKey, Authenticator, Claims, Issuer};
use lianqiao_policy::{
    AuthError, Enforcer, FieldCatalog, FieldClass, FieldSpec, Level, Mask, PolicyEngine, Principal,
    Visibility,
};

fn config_policy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/policy")
}

fn shipped() -> PolicyEngine {
    PolicyEngine::load(&config_policy()).unwrap_or_else(|p| panic!("{p:?}"))
}

fn catalog() -> FieldCatalog {
    let mut c = FieldCatalog::default();
    let spec = |name: &str, class, mask, values: &[&str]| FieldSpec {
        name: name.into(),
        class,
        mask,
        attribute_values: values.iter().map(|v| v.to_string()).collect(),
        groupable: matches!(name, "ethnicity" | "gender" | "loop"),
    };
    c.insert(
        "members",
        spec("id", FieldClass::Public, Mask::Withhold, &[]),
    );
    c.insert(
        "members",
        spec("name", FieldClass::Personal, Mask::Name, &[]),
    );
    c.insert(
        "members",
        spec("phone", FieldClass::Personal, Mask::Phone, &[]),
    );
    c.insert(
        "members",
        spec("id_number", FieldClass::Sensitive, Mask::IdNumber, &[]),
    );
    c.insert(
        "members",
        spec("ethnicity", FieldClass::Sensitive, Mask::Withhold, &[]),
    );
    c.insert(
        "members",
        spec("gender", FieldClass::Internal, Mask::Withhold, &[]),
    );
    c.insert(
        "cases",
        spec("id", FieldClass::Internal, Mask::Withhold, &[]),
    );
    c.insert(
        "cases",
        spec(
            "loop",
            FieldClass::Internal,
            Mask::Withhold,
            &["grid", "community", "street", "city"],
        ),
    );
    c
}

fn enforcer() -> Enforcer {
    Enforcer {
        engine: Arc::new(shipped()),
        catalog: Arc::new(catalog()),
    }
}

fn p(level: Level, division: &str) -> Principal {
    Principal::new("t", level, division, Vec::<String>::new(), "case-handling")
}

#[test]
fn the_shipped_policy_validates_and_names_its_policies() {
    let engine = shipped();
    assert!(
        engine
            .policy("staff-list-records-of-their-jurisdiction")
            .is_some()
    );
    assert_eq!(engine.policies().count(), 18);
    assert_eq!(engine.version().len(), 16);
}

#[test]
fn case_writes_follow_the_loops() {
    let e = enforcer();
    let who = |level: Level, division: &str, roles: &[&str]| {
        Principal::new(
            "w",
            level,
            division.to_string(),
            roles.iter().map(|r| r.to_string()),
            "case-handling",
        )
    };
    let grid = who(Level::Grid, "15010300100101", &[]);
    let community = who(Level::Community, "150103001001", &[]);
    let street = who(Level::Street, "150103001", &[]);
    // A grid moves its own grid's grid-loop cases, and nothing above.
    assert!(
        e.authorize_write(&grid, "15010300100101", "grid", "assessed")
            .is_ok()
    );
    assert!(
        e.authorize_write(&grid, "15010300100101", "community", "assessed")
            .is_err()
    );
    let other = e
        .authorize_write(&grid, "15010300100102", "grid", "assessed")
        .unwrap_err();
    assert_eq!(other.policies, ["no-case-writes-outside-jurisdiction"]);
    // A community escalates, it does not whistle.
    assert!(
        e.authorize_write(&community, "15010300100101", "community", "escalated")
            .is_ok()
    );
    let whistle = e
        .authorize_write(&community, "15010300100101", "community", "whistled")
        .unwrap_err();
    assert_eq!(whistle.policies, ["only-streets-whistle"]);
    assert_eq!(whistle.reason, "forbidden_by_policy");
    assert!(
        e.authorize_write(&street, "15010300100101", "street", "whistled")
            .is_ok()
    );
    // City-loop cases move by the city platform's system principal only.
    let platform = who(Level::City, "1501", &["city-platform"]);
    let city_staff = who(Level::City, "1501", &[]);
    assert!(
        e.authorize_write(&platform, "15010300100101", "city", "reported_in")
            .is_ok()
    );
    assert!(
        e.authorize_write(&city_staff, "15010300100101", "city", "reported_in")
            .is_err()
    );
    assert!(
        e.authorize_write(&platform, "15010300100101", "street", "assessed")
            .is_err()
    );
}

#[test]
fn broken_policies_are_reported_with_their_file() {
    let schema = std::fs::read_to_string(config_policy().join("lianqiao.cedarschema")).unwrap();
    let check = |text: &str| {
        PolicyEngine::from_sources(
            "s.cedarschema",
            &schema,
            &[("bad.cedar".into(), text.into())],
        )
        .expect_err("refused")
    };
    // Syntax: the line is named.
    let problems = check("permit (principal, action, resource)\nwhen { principal.level == };");
    assert_eq!(problems[0].file, "bad.cedar");
    assert!(problems[0].message.contains("line 2"), "{}", problems[0]);
    // Not in the schema (strict validation).
    let problems = check(
        "@id(\"typo\")\npermit (principal, action, resource) when { principal.levle == \"grid\" };",
    );
    assert!(problems[0].message.contains("`typo`"), "{}", problems[0]);
    // Two policies with one id.
    let problems = check(
        "@id(\"a\")\npermit (principal, action, resource);\n@id(\"a\")\nforbid (principal, action, resource);",
    );
    assert!(problems[0].message.contains("unique"), "{}", problems[0]);
}

#[test]
fn scope_is_the_inner_division_and_rows_outside_it_are_dropped() {
    let e = enforcer();
    let grid = p(Level::Grid, "15010300100101");
    let grant = e.authorize_list(&grid, "members", "150103").unwrap();
    assert_eq!(grant.scope, "15010300100101");
    assert!(e.admits(&grid, &grant, "1501030010010102", None));
    assert!(
        !e.admits(&grid, &grant, "15010300100102", None),
        "the next grid"
    );
    assert!(!e.admits(&grid, &grant, "150105", None), "another district");
    assert_eq!(grant.visibility("phone"), Visibility::Clear);
    assert_eq!(
        grant.visibility("id_number"),
        Visibility::Masked(Mask::IdNumber)
    );
    assert_eq!(grant.visibility("ethnicity"), Visibility::Withheld);
    assert_eq!(grant.visibility("no_such_field"), Visibility::Withheld);
    assert!(e.authorize_list(&grid, "members", "150105").is_err());
}

#[test]
fn the_city_sees_only_cases_of_its_loop_and_rows_are_checked_again() {
    let e = enforcer();
    let city = p(Level::City, "1501");
    let grant = e.authorize_list(&city, "cases", "150103").unwrap();
    assert_eq!(
        grant.attribute,
        Some(("loop".to_string(), vec!["city".to_string()]))
    );
    assert!(e.admits(&city, &grant, "150103001", Some("city")));
    assert!(!e.admits(&city, &grant, "150103001", Some("grid")));
    assert!(!e.admits(&city, &grant, "150103001", None));
    assert!(e.authorize_list(&city, "members", "150103").is_err());
    let stats = e.authorize_stats(&city, "members", "1501").unwrap();
    assert!(stats.statistics_only);
    assert!(!stats.exact_for(&[], None), "no record access: protected");
    assert!(stats.may_group("gender"));
    assert!(
        stats.may_group("ethnicity"),
        "the shipped policy: minority shares for the city"
    );
    assert!(
        stats.group_rule("id_number").is_none(),
        "identifiers are never groupable"
    );
    let district = e
        .authorize_stats(&p(Level::District, "150103"), "members", "150103")
        .unwrap();
    assert!(!district.statistics_only);
    assert!(
        district.exact_for(&["gender"], None),
        "gender is clear to the district"
    );
    assert!(
        !district.exact_for(&["ethnicity"], None),
        "ethnicity is withheld from the district's lists: counts by it are protected"
    );
    let street = e
        .authorize_stats(&p(Level::Street, "150103001"), "members", "150103001")
        .unwrap();
    assert!(
        !street.may_group("ethnicity"),
        "streets may not count by ethnicity"
    );
    // The city may list city-loop cases: exact only for those.
    let cases = e.authorize_stats(&city, "cases", "1501").unwrap();
    assert!(!cases.statistics_only);
    assert!(!cases.exact_for(&[], None), "all loops: protected");
    assert!(cases.exact_for(&["loop"], Some(&["city".to_string()])));
    assert!(!cases.exact_for(&["loop"], Some(&["city".to_string(), "grid".to_string()])));
}

#[test]
fn decisions_are_cached_per_question() {
    let e = enforcer();
    let street = p(Level::Street, "150103001");
    e.authorize_list(&street, "members", "150103001").unwrap();
    let evaluated = e
        .engine
        .stats
        .evaluations
        .load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..10 {
        e.authorize_list(&street, "members", "150103001").unwrap();
    }
    assert_eq!(
        e.engine
            .stats
            .evaluations
            .load(std::sync::atomic::Ordering::Relaxed),
        evaluated,
        "no new evaluation for a question asked before"
    );
}

#[test]
fn a_case_table_that_expects_the_wrong_thing_fails() {
    let e = enforcer();
    let table = r#"
[[case]]
name = "wrong on purpose"
principal = { level = "street", division = "150103001" }
purpose = "case-handling"
action = "list"
resource = "members"
division = "150103001"
expect = "allow"
fields = { phone = "clear" }
policies = ["grid-sees-its-people"]
"#;
    let results = lianqiao_policy::cases::run(&e, "t.toml", table).unwrap();
    assert!(!results[0].passed());
    assert_eq!(results[0].problems.len(), 2, "{:?}", results[0].problems);
}

#[test]
fn tokens_verify_only_with_the_right_key_issuer_audience_and_time() {
    let (private, public) = authn::generate_ed25519().unwrap();
    let issuer = |aud: &str| Issuer {
        issuer: "iss".into(),
        audience: aud.into(),
        key: authn::decoding_key(jsonwebtoken::Algorithm::EdDSA, public.as_bytes()).unwrap(),
        algorithm: jsonwebtoken::Algorithm::EdDSA,
    };
    let claims = |exp: u64, division: &str| Claims {
        sub: "u".into(),
        iss: "iss".into(),
        aud: "gw".into(),
        exp,
        nbf: None,
        level: "street".into(),
        division: division.into(),
        roles: vec!["r".into()],
    };
    let good = authn::issue_ed25519(&private, &claims(authn::now() + 60, "150103001")).unwrap();
    let auth = Authenticator::new(vec![issuer("gw")], vec![]);
    let id = auth
        .authenticate(Some(&format!("Bearer {good}")), None)
        .unwrap();
    assert_eq!(
        (id.level, id.division.as_str()),
        (Level::Street, "150103001")
    );
    let other = Authenticator::new(vec![issuer("elsewhere")], vec![]);
    assert_eq!(
        other.authenticate(Some(&format!("Bearer {good}")), None),
        Err(AuthError::WrongAudience)
    );
    let old = authn::issue_ed25519(&private, &claims(authn::now() - 600, "150103001")).unwrap();
    assert_eq!(
        auth.authenticate(Some(&format!("Bearer {old}")), None),
        Err(AuthError::Expired)
    );
    let wrong_level = authn::issue_ed25519(&private, &claims(authn::now() + 60, "150103")).unwrap();
    assert!(matches!(
        auth.authenticate(Some(&format!("Bearer {wrong_level}")), None),
        Err(AuthError::BadClaims(_))
    ));
    let mut tampered = good.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert_eq!(
        auth.authenticate(Some(&format!("Bearer {tampered}")), None),
        Err(AuthError::BadSignature)
    );
}

#[test]
fn api_keys_are_matched_by_hash() {
    let identity = authn::identity("sys", Level::City, "1501", vec![], "api-key").unwrap();
    let auth = Authenticator::new(
        vec![],
        vec![ApiKey {
            sha256: authn::sha256_hex("secret-key"),
            identity: identity.clone(),
        }],
    );
    assert_eq!(auth.authenticate(None, Some("secret-key")), Ok(identity));
    assert_eq!(
        auth.authenticate(None, Some("other")),
        Err(AuthError::UnknownApiKey)
    );
    assert_eq!(auth.authenticate(None, None), Err(AuthError::Missing));
}

/// A small hierarchy shaped like the real one: 2 cities, 2 districts each,
/// 2 streets, 2 communities, 2 big grids, 2 medium grids.
fn hierarchy() -> Vec<String> {
    let mut codes = vec!["15".to_string()];
    for c in ["1501", "1509"] {
        codes.push(c.into());
        for d in ["03", "05"] {
            let d = format!("{c}{d}");
            codes.push(d.clone());
            for s in ["001", "002"] {
                let s = format!("{d}{s}");
                codes.push(s.clone());
                for m in ["001", "002"] {
                    let m = format!("{s}{m}");
                    codes.push(m.clone());
                    for g in ["01", "02"] {
                        let g = format!("{m}{g}");
                        codes.push(g.clone());
                        for h in ["01", "02"] {
                            codes.push(format!("{g}{h}"));
                        }
                    }
                }
            }
        }
    }
    codes
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The scope the gateway derives from the hierarchy agrees with the
    /// policy: Cedar never permits a record outside the principal's
    /// jurisdiction (so narrowing loses nothing the policy would allow),
    /// and for staff levels it permits every division inside it (so the
    /// pushed-down scope hides nothing the policy allows).
    #[test]
    fn the_hierarchy_scope_agrees_with_the_policy(
        who in any::<prop::sample::Index>(),
        what in any::<prop::sample::Index>(),
        kind in prop::sample::select(vec!["members", "workers", "cases", "grids", "party-orgs", "divisions"]),
        purpose in prop::sample::select(vec!["case-handling", "statistics"]),
    ) {
        static SHARED: std::sync::OnceLock<(Vec<String>, Enforcer)> = std::sync::OnceLock::new();
        let (codes, e) = SHARED.get_or_init(|| (hierarchy(), enforcer()));
        let division = who.get(codes);
        let level = lianqiao_policy::division::level_of(division).unwrap();
        let principal = Principal::new("p", level, division.clone(), Vec::<String>::new(), purpose);
        let target = what.get(codes);
        let inside = target.starts_with(division.as_str());
        for record_loop in [None, Some("grid"), Some("city")] {
            let d = e.engine.decide(&lianqiao_policy::engine::Question {
                principal: &principal,
                action: lianqiao_policy::Action::List,
                kind,
                division: target,
                record_loop: if kind == "cases" { record_loop } else { None },
                field: None,
                to: None,
            });
            if d.allowed {
                prop_assert!(inside, "{kind} in {target} permitted to {principal:?}");
            }
            let staff = matches!(level, Level::District | Level::Street | Level::Community | Level::Grid);
            if inside && (staff || matches!(kind, "grids" | "party-orgs" | "divisions")) {
                prop_assert!(d.allowed, "{kind} in {target} denied to {principal:?}");
            }
        }
    }
}

/// Decisions for rows are keyed on what a policy can see of a division:
/// the grids of a street that no policy names share one decision (one
/// evaluation for many rows), while a grid a policy names is decided for
/// itself — the answer is the same as asking Cedar each time.
#[test]
fn rows_of_divisions_no_policy_tells_apart_share_one_decision() {
    use lianqiao_policy::engine::{Action, Question};
    use std::sync::atomic::Ordering::Relaxed;
    let schema = std::fs::read_to_string(config_policy().join("lianqiao.cedarschema")).unwrap();
    let mut files: Vec<(String, String)> = std::fs::read_dir(config_policy())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.push((
        "one-grid.cedar".into(),
        "@id(\"hide-one-grid\")\nforbid (principal, action, resource in Lianqiao::Division::\"15010300100103\");\n".into(),
    ));
    let engine = PolicyEngine::from_sources("lianqiao.cedarschema", &schema, &files)
        .unwrap_or_else(|p| panic!("{p:?}"));
    let street = p(Level::Street, "150103001");
    fn question<'a>(principal: &'a lianqiao_policy::Principal, division: &'a str) -> Question<'a> {
        Question {
            principal,
            action: Action::List,
            kind: "grids",
            division,
            record_loop: None,
            field: None,
            to: None,
        }
    }
    let ask = |division| question(&street, division);
    let evaluations = || engine.stats.evaluations.load(Relaxed);
    let before = evaluations();
    let grids: Vec<String> = (1..=9).map(|g| format!("1501030010010{g}")).collect();
    let mut answers = Vec::new();
    for g in &grids {
        answers.push(engine.allows(&ask(g)));
    }
    assert_eq!(
        answers,
        grids
            .iter()
            .map(|g| engine.evaluate(&ask(g)).allowed)
            .collect::<Vec<_>>(),
        "the same answers as Cedar's for each grid"
    );
    assert!(!answers[2], "the grid the policy names is hidden");
    assert!(answers.iter().enumerate().all(|(i, a)| *a == (i != 2)));
    // Nine grids, two kinds of division: two evaluations (plus the nine
    // direct ones above).
    assert_eq!(evaluations() - before, 2 + 9);
    // Another street is outside the jurisdiction: another decision.
    assert!(!engine.allows(&ask("15010300200101")));
}
