//! Cedar: operators' policies, validated against the schema, answering one
//! question at a time — and remembering the answers.
//!
//! A question names a principal, an action, and the records of one kind in
//! one division (plus, for field actions, the field). The entities a
//! question needs are few: the division's chain of ancestors, the
//! principal's, the principal and the record. They are built per question
//! from the codes and the registry, so a question costs tens of
//! microseconds, and each answer is cached per (principal, policy version,
//! division, …): the hot path never calls the engine per row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::division::{self, Registry};
use crate::fields::FieldClass;
use crate::principal::Principal;

/// The actions of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    List,
    Aggregate,
    /// Count records grouped by (or filtered on) one field in statistics.
    Group,
    ReadInternal,
    ReadPersonal,
    ReadPersonalMasked,
    ReadSensitive,
    ReadSensitiveMasked,
    WriteCase,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::List,
        Action::Aggregate,
        Action::Group,
        Action::ReadInternal,
        Action::ReadPersonal,
        Action::ReadPersonalMasked,
        Action::ReadSensitive,
        Action::ReadSensitiveMasked,
        Action::WriteCase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::Aggregate => "aggregate",
            Action::Group => "group",
            Action::ReadInternal => "read_internal",
            Action::ReadPersonal => "read_personal",
            Action::ReadPersonalMasked => "read_personal_masked",
            Action::ReadSensitive => "read_sensitive",
            Action::ReadSensitiveMasked => "read_sensitive_masked",
            Action::WriteCase => "write_case",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// One question to the policy.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub principal: &'a Principal,
    pub action: Action,
    /// The resource kind: `members`, `cases`, …
    pub kind: &'a str,
    /// The division the records are in.
    pub division: &'a str,
    /// `loop` of a case, when the question is about cases of one loop.
    pub record_loop: Option<&'a str>,
    /// For field actions: the field and its class.
    pub field: Option<(&'a str, FieldClass)>,
    /// For `write_case`: the state the case would move to (`discovered`
    /// for a new case).
    pub to: Option<&'a str>,
}

/// The answer, with the policies that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// The permits that allowed it, or the forbids that denied it; empty
    /// when it was denied because nothing permits it.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (they are skipped, so they can only
    /// deny): worth an operator's attention.
    pub errors: Vec<String>,
}

/// A policy as operators see it in explanations.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    pub id: String,
    pub file: String,
    pub effect: &'static str,
    pub description: Option<String>,
}

/// Something wrong with the policy files.
#[derive(Debug, Clone)]
pub struct PolicyProblem {
    pub file: String,
    pub message: String,
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

/// How many questions were answered from the cache and how many evaluated.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub evaluations: AtomicU64,
    pub cache_hits: AtomicU64,
}

/// Decisions cached at once; past this the cache starts over (a cheap
/// bound: a refill costs one evaluation per distinct question).
const CACHE_CAPACITY: usize = 200_000;

pub struct PolicyEngine {
    policies: PolicySet,
    /// What of a resource's division a decision can see (`DivisionView`).
    view: DivisionView,
    info: BTreeMap<String, PolicyInfo>,
    version: String,
    authorizer: Authorizer,
    registry: RwLock<Registry>,
    cache: Mutex<HashMap<String, Decision>>,
    pub stats: EngineStats,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("version", &self.version)
            .field("policies", &self.info.len())
            .finish_non_exhaustive()
    }
}

const SCHEMA_SUFFIX: &str = ".cedarschema";
const POLICY_SUFFIX: &str = ".cedar";

impl PolicyEngine {
    /// Load `dir`: exactly one `*.cedarschema` and any number of `*.cedar`
    /// files (subdirectories, such as `tests/`, are not read). Every problem
    /// is reported, each with its file.
    pub fn load(dir: &Path) -> Result<PolicyEngine, Vec<PolicyProblem>> {
        let problem = |file: &Path, message: String| PolicyProblem {
            file: file.display().to_string(),
            message,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![problem(
                dir,
                format!("cannot read the policy directory: {e}"),
            )]
        })?;
        let mut schemas = Vec::new();
        let mut files = Vec::new();
        let mut problems = Vec::new();
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !path.is_file() {
                continue;
            }
            let is_schema = name.ends_with(SCHEMA_SUFFIX);
            if !is_schema && !name.ends_with(POLICY_SUFFIX) {
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) if is_schema => schemas.push((path.display().to_string(), text)),
                Ok(text) => files.push((path.display().to_string(), text)),
                Err(e) => problems.push(problem(&path, format!("cannot read: {e}"))),
            }
        }
        if schemas.len() != 1 {
            problems.push(problem(
                dir,
                format!(
                    "needs exactly one *{SCHEMA_SUFFIX} file, found {}",
                    schemas.len()
                ),
            ));
        }
        if files.is_empty() {
            problems.push(problem(
                dir,
                format!("has no *{POLICY_SUFFIX} files: nothing would be permitted"),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let (schema_file, schema_text) = &schemas[0];
        PolicyEngine::from_sources(schema_file, schema_text, &files)
    }

    /// Build from the schema's text and `(file, text)` policy files.
    pub fn from_sources(
        schema_file: &str,
        schema_text: &str,
        files: &[(String, String)],
    ) -> Result<PolicyEngine, Vec<PolicyProblem>> {
        let mut problems = Vec::new();
        let schema = match Schema::from_cedarschema_str(schema_text) {
            Ok((schema, _warnings)) => Some(schema),
            Err(e) => {
                problems.push(PolicyProblem {
                    file: schema_file.to_string(),
                    message: describe(&e, schema_text),
                });
                None
            }
        };
        let mut policies = PolicySet::new();
        let mut info = BTreeMap::new();
        let mut digest = Sha256::new();
        digest.update(schema_text.as_bytes());
        for (file, text) in files {
            digest.update(file.as_bytes());
            digest.update(text.as_bytes());
            let parsed = match PolicySet::from_str(text) {
                Ok(set) => set,
                Err(e) => {
                    problems.push(PolicyProblem {
                        file: file.clone(),
                        message: describe(&e, text),
                    });
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push(PolicyProblem {
                    file: file.clone(),
                    message: "templates are not supported; write plain policies".into(),
                });
            }
            let short = Path::new(file)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(file);
            for (n, policy) in parsed.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map_or_else(|| format!("{short}#{n}"), str::to_string);
                if info.contains_key(&id) {
                    problems.push(PolicyProblem {
                        file: file.clone(),
                        message: format!("a second policy has @id(\"{id}\"); ids must be unique"),
                    });
                    continue;
                }
                let effect = match policy.effect() {
                    cedar_policy::Effect::Permit => "permit",
                    cedar_policy::Effect::Forbid => "forbid",
                };
                info.insert(
                    id.clone(),
                    PolicyInfo {
                        id: id.clone(),
                        file: file.clone(),
                        effect,
                        description: policy.annotation("description").map(str::to_string),
                    },
                );
                if let Err(e) = policies.add(policy.new_id(PolicyId::new(&id))) {
                    problems.push(PolicyProblem {
                        file: file.clone(),
                        message: format!("policy `{id}`: {e}"),
                    });
                }
            }
        }
        let Some(schema) = schema else {
            return Err(problems);
        };
        let validation = Validator::new(schema).validate(&policies, ValidationMode::Strict);
        for e in validation.validation_errors() {
            let id = e.policy_id().to_string();
            let file = info.get(&id).map_or_else(String::new, |i| i.file.clone());
            problems.push(PolicyProblem {
                file,
                message: format!("policy `{id}` does not match the schema: {e}"),
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(PolicyEngine {
            view: DivisionView::of(&policies),
            policies,
            info,
            version: hex::encode(&digest.finalize()[..8]),
            authorizer: Authorizer::new(),
            registry: RwLock::new(Registry::default()),
            cache: Mutex::new(HashMap::new()),
            stats: EngineStats::default(),
        })
    }

    /// A short hash of the schema and every policy file.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn policy(&self, id: &str) -> Option<&PolicyInfo> {
        self.info.get(id)
    }

    pub fn policies(&self) -> impl Iterator<Item = &PolicyInfo> {
        self.info.values()
    }

    /// Replace the registry (names of divisions) and forget every cached
    /// decision that might have read it.
    pub fn set_registry(&self, registry: Registry) {
        match self.registry.write() {
            Ok(mut r) => *r = registry,
            Err(poisoned) => *poisoned.into_inner() = registry,
        }
        self.lock_cache().clear();
    }

    /// The registry the engine uses now.
    pub fn registry(&self) -> Registry {
        match self.registry.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The registry's divisions of code length `len` inside `ancestor`.
    pub fn divisions_within(&self, ancestor: &str, len: usize) -> Vec<String> {
        match self.registry.read() {
            Ok(r) => r.within(ancestor, len),
            Err(poisoned) => poisoned.into_inner().within(ancestor, len),
        }
    }

    /// When the registry in use was fetched, and whether completely.
    pub fn registry_fetched(&self) -> Option<(std::time::SystemTime, bool)> {
        match self.registry.read() {
            Ok(r) => r.fetched(),
            Err(poisoned) => poisoned.into_inner().fetched(),
        }
    }

    /// Divisions in the registry.
    pub fn registry_len(&self) -> usize {
        match self.registry.read() {
            Ok(r) => r.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Decision>> {
        match self.cache.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The decision for `q`, from the cache when it was asked before.
    pub fn decide(&self, q: &Question) -> Decision {
        if let Some(d) = self.cached(q, Decision::clone) {
            return d;
        }
        let decision = self.evaluate(q);
        let mut key = String::new();
        write_key(&mut key, q, &self.view);
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, decision.clone());
        decision
    }

    /// Whether `q` is allowed: `decide` without copying the deciding
    /// policies (the per-row check of phase 2 asks only this).
    pub fn allows(&self, q: &Question) -> bool {
        self.cached(q, |d| d.allowed)
            .unwrap_or_else(|| self.decide(q).allowed)
    }

    /// `f` of the cached decision for `q`, if there is one. The key is built
    /// in a buffer of the thread's, so a hit allocates nothing.
    fn cached<R>(&self, q: &Question, f: impl FnOnce(&Decision) -> R) -> Option<R> {
        thread_local! {
            static KEY: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(128));
        }
        let hit = KEY.with(|buffer| {
            let mut key = buffer.borrow_mut();
            key.clear();
            write_key(&mut key, q, &self.view);
            self.lock_cache().get(key.as_str()).map(f)
        });
        if hit.is_some() {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Ask Cedar, without the cache.
    pub fn evaluate(&self, q: &Question) -> Decision {
        self.stats.evaluations.fetch_add(1, Ordering::Relaxed);
        match self.request(q) {
            Ok((request, entities)) => {
                let response = self
                    .authorizer
                    .is_authorized(&request, &self.policies, &entities);
                let mut policies: Vec<String> = response
                    .diagnostics()
                    .reason()
                    .map(ToString::to_string)
                    .collect();
                policies.sort();
                Decision {
                    allowed: response.decision() == CedarDecision::Allow,
                    policies,
                    errors: response
                        .diagnostics()
                        .errors()
                        .map(ToString::to_string)
                        .collect(),
                }
            }
            // A question the schema cannot express is denied, and says why.
            Err(e) => Decision {
                allowed: false,
                policies: Vec::new(),
                errors: vec![e],
            },
        }
    }

    fn request(&self, q: &Question) -> Result<(Request, Entities), String> {
        let registry = match self.registry.read() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut entities: Vec<Entity> = Vec::with_capacity(16);
        let mut seen = HashSet::new();
        for code in [q.division, q.principal.division.as_str()] {
            let mut parent: Option<EntityUid> = None;
            for step in division::ancestors(code).into_iter().chain([code]) {
                let uid = uid("Division", step)?;
                if seen.insert(step.to_string()) {
                    let attrs = HashMap::from([
                        (
                            "level".to_string(),
                            RestrictedExpression::new_string(
                                division::level_of(step)
                                    .map_or("unknown", |l| l.as_str())
                                    .to_string(),
                            ),
                        ),
                        (
                            "name".to_string(),
                            RestrictedExpression::new_string(
                                registry.name(step).unwrap_or("").to_string(),
                            ),
                        ),
                    ]);
                    let parents: HashSet<EntityUid> = parent.iter().cloned().collect();
                    entities
                        .push(Entity::new(uid.clone(), attrs, parents).map_err(|e| e.to_string())?);
                }
                parent = Some(uid);
            }
        }
        let principal = uid("Staff", &q.principal.id)?;
        let jurisdiction = uid("Division", &q.principal.division)?;
        entities.push(
            Entity::new(
                principal.clone(),
                HashMap::from([
                    (
                        "level".to_string(),
                        RestrictedExpression::new_string(q.principal.level.as_str().to_string()),
                    ),
                    (
                        "jurisdiction".to_string(),
                        RestrictedExpression::new_entity_uid(jurisdiction.clone()),
                    ),
                    (
                        "roles".to_string(),
                        RestrictedExpression::new_set(
                            q.principal
                                .roles
                                .iter()
                                .map(|r| RestrictedExpression::new_string(r.clone())),
                        ),
                    ),
                ]),
                HashSet::from([jurisdiction]),
            )
            .map_err(|e| e.to_string())?,
        );
        let record_id = match q.record_loop {
            Some(l) => format!("{}@{}@{l}", q.kind, q.division),
            None => format!("{}@{}", q.kind, q.division),
        };
        let resource = uid("Record", &record_id)?;
        let mut attrs = HashMap::from([(
            "kind".to_string(),
            RestrictedExpression::new_string(q.kind.to_string()),
        )]);
        if let Some(l) = q.record_loop {
            attrs.insert(
                "loop".to_string(),
                RestrictedExpression::new_string(l.to_string()),
            );
        }
        entities.push(
            Entity::new(
                resource.clone(),
                attrs,
                HashSet::from([uid("Division", q.division)?]),
            )
            .map_err(|e| e.to_string())?,
        );
        // Built here from codes and the principal, shaped by the schema the
        // policies were validated against: checking them against it again
        // per question would triple the cost of an uncached decision.
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        let (field, class) = q.field.map_or(("", ""), |(f, c)| (f, c.as_str()));
        let context = Context::from_pairs([
            (
                "purpose".to_string(),
                RestrictedExpression::new_string(q.principal.purpose.clone()),
            ),
            (
                "field".to_string(),
                RestrictedExpression::new_string(field.to_string()),
            ),
            (
                "class".to_string(),
                RestrictedExpression::new_string(class.to_string()),
            ),
            (
                "to".to_string(),
                RestrictedExpression::new_string(q.to.unwrap_or("").to_string()),
            ),
        ])
        .map_err(|e| e.to_string())?;
        let request = Request::new(
            principal,
            uid("Action", q.action.as_str())?,
            resource,
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

/// What a decision can see of the resource's division.
///
/// A record's entity has the division as its parent and names no division
/// in its attributes, so a policy can tell one division from another only
/// with `resource in E`, for `E` a division it names (an entity literal)
/// or the principal's jurisdiction — unless it names a record itself
/// (`Record::"…"` carries its division in its id). When no policy names a
/// record, two divisions for which each of those `in` tests comes out the
/// same get the same decision: the cache keys decisions on that pattern,
/// not the code. A page of 500 new grids is then one Cedar evaluation,
/// not 500 (~70 µs each: BENCHMARKS.md, "The whole region").
#[derive(Debug, Default)]
struct DivisionView {
    /// Division ids the policies name.
    named: Vec<String>,
    /// Some policy names a record: key on the division code itself.
    by_code: bool,
}

impl DivisionView {
    fn of(policies: &PolicySet) -> DivisionView {
        let mut view = DivisionView {
            // A template's slots are filled at link time, out of sight
            // here: key on the code.
            by_code: policies.templates().next().is_some(),
            ..DivisionView::default()
        };
        for policy in policies.policies() {
            for literal in policy.entity_literals() {
                match literal.type_name().basename() {
                    "Division" => view.named.push(literal.id().unescaped().to_string()),
                    "Record" => view.by_code = true,
                    _ => {}
                }
            }
        }
        view.named.sort();
        view.named.dedup();
        view
    }

    /// The cache's stand-in for `q.division`: the code, or which of the
    /// named divisions and the principal's jurisdiction are the division
    /// or among its ancestors (as `request` builds them).
    fn write(&self, key: &mut String, q: &Question) {
        if self.by_code {
            key.push_str(q.division);
            return;
        }
        let within = |e: &str| division::is_self_or_ancestor(e, q.division);
        key.push('\u{1f}');
        for named in self.named.iter().map(String::as_str) {
            key.push(if within(named) { '1' } else { '0' });
        }
        key.push(if within(&q.principal.division) {
            '1'
        } else {
            '0'
        });
    }
}

/// The decision cache's key of `q`: everything the decision depends on
/// (`Principal::cache_key`, then the question, with the division as
/// `DivisionView` sees it), separated by control characters no part can
/// contain.
fn write_key(key: &mut String, q: &Question, view: &DivisionView) {
    q.principal.write_cache_key(key);
    for part in [q.action.as_str(), q.kind] {
        key.push('\u{1e}');
        key.push_str(part);
    }
    key.push('\u{1e}');
    view.write(key, q);
    for part in [
        q.record_loop.unwrap_or("\u{0}"),
        q.field.map_or("", |f| f.0),
        q.to.unwrap_or(""),
    ] {
        key.push('\u{1e}');
        key.push_str(part);
    }
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, String> {
    let name = EntityTypeName::from_str(&format!("Lianqiao::{kind}")).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(name, EntityId::new(id)))
}

/// An error with the line it points at, when it points somewhere.
fn describe(e: &(dyn miette::Diagnostic + Send + Sync + 'static), text: &str) -> String {
    let mut message = e.to_string();
    if let Some(label) = e.labels().and_then(|mut l| l.next()) {
        let line = text[..label.offset().min(text.len())].matches('\n').count() + 1;
        message = format!("line {line}: {message}");
    }
    if let Some(help) = e.help() {
        message.push_str(&format!(" ({help})"));
    }
    let related: Vec<String> = e
        .related()
        .map(|r| r.map(ToString::to_string).collect())
        .unwrap_or_default();
    if !related.is_empty() {
        message.push_str(&format!(": {}", related.join("; ")));
    }
    message
}
