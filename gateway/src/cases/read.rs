//! Where a case is, read by the gateway for itself (to decide a write or
//! to work the saga): nothing read here leaves the gateway unless the
//! disclosure gate releases it on another path.

use lianqiao_host::contract::{FilterOp, Value};

use crate::federation::executor::ListError;
use crate::federation::{self, FieldFilter, ListRequest};
use crate::model;
use crate::sources::SourceSet;

/// The fields a write needs of the case it moves.
const FIELDS: &[&str] = &[
    "id",
    "division",
    "loop",
    "state",
    "title",
    "category",
    "due_at",
    "reporter_name",
    "reporter_phone",
    "linked_case",
];

/// Pages walked at most looking for one case.
const MAX_PAGES: usize = 10_000;

/// A case as its source holds it.
#[derive(Debug, Clone)]
pub struct Located {
    pub source: String,
    pub division: String,
    pub case_loop: String,
    pub state: String,
    cells: Vec<(String, Value)>,
}

impl Located {
    /// A text field of the record, if set.
    pub fn text(&self, name: &str) -> Option<String> {
        self.cells
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| match v {
                Value::Text(t) | Value::Timestamp(t) | Value::Date(t) => Some(t.clone()),
                _ => None,
            })
    }
}

/// The case `id` under division `scope`, from every source that serves
/// cases there (strict: a failing source is an error, not an absence).
pub async fn locate(
    sources: &SourceSet,
    scope: &str,
    id: &str,
) -> Result<Option<Located>, (ListRequest, ListError)> {
    let entity = &model::CASES;
    let Some(field) = entity.field("id") else {
        return Ok(None);
    };
    let request = ListRequest {
        entity,
        scope: vec![scope.to_string()],
        filters: vec![FieldFilter {
            field,
            op: FilterOp::Eq,
            values: vec![Value::Text(id.to_string())],
        }],
        projection: FIELDS.to_vec(),
        output: FIELDS.to_vec(),
        limit: 2,
        cursor: None,
        strict: true,
    };
    // A source that cannot take the id filter is filtered here, a page
    // at a time: walk on until the case turns up or every source is done.
    let mut request = request;
    let mut outcome;
    let mut pages = 0;
    loop {
        outcome = match federation::execute(sources, &request).await {
            Ok(o) => o,
            Err(e) => return Err((request, e)),
        };
        pages += 1;
        match outcome.next.take() {
            Some(next) if outcome.rows.is_empty() && pages < MAX_PAGES => {
                request.cursor = Some(next)
            }
            _ => break,
        }
    }
    Ok(outcome.rows.into_iter().next().map(|row| {
        let mut located = Located {
            source: row.source.to_string(),
            division: row.division.clone(),
            case_loop: String::new(),
            state: String::new(),
            cells: row.cells,
        };
        located.case_loop = located.text("loop").unwrap_or_default();
        located.state = located.text("state").unwrap_or_default();
        located
    }))
}
