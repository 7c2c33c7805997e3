//! `GET /v1/_explain`: what the policy decides for a request, and which
//! policies decided it. Callers explain their own access; holders of the
//! `policy-admin` role may explain anyone's (`as_level`, `as_division`,
//! `as_roles`, `as_purpose`).

use std::sync::Arc;

use axum::Extension;
use axum::extract::RawQuery;
use axum::response::{IntoResponse, Response};
use lianqiao_policy::{Level, Principal};

use super::params;
use crate::disclosure::{Facts, explained};
use crate::error::ApiError;
use crate::state::Gateway;

pub const ADMIN_ROLE: &str = "policy-admin";

pub async fn explain(
    Extension(gateway): Extension<Arc<Gateway>>,
    Extension(caller): Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    let facts = Facts {
        decision: Some("allow"),
        ..Facts::default()
    };
    let result = (|| {
        let pairs = params::pairs(raw.as_deref(), &gateway.config.server)?;
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        for (k, _) in &pairs {
            if !matches!(
                k.as_str(),
                "resource"
                    | "division"
                    | "action"
                    | "as_level"
                    | "as_division"
                    | "as_roles"
                    | "as_purpose"
            ) {
                return Err(ApiError::invalid(format!(
                    "unknown parameter `{k}`; use resource, division, action (list or aggregate) and, for policy admins, as_level, as_division, as_roles, as_purpose"
                )));
            }
        }
        let resource = get("resource")
            .filter(|r| crate::model::entity(r).is_some())
            .ok_or_else(|| {
                ApiError::missing("`resource=<name>` is required (members, cases, …)")
            })?;
        let division = get("division")
            .filter(|d| crate::config::is_division_code(d))
            .map(lianqiao_policy::division::canonical)
            .unwrap_or(&caller.division);
        let action = match get("action").unwrap_or("list") {
            a @ ("list" | "aggregate") => a,
            other => {
                return Err(ApiError::invalid(format!(
                    "`action` is list or aggregate, got `{other}`"
                )));
            }
        };
        let impersonates = pairs.iter().any(|(k, _)| k.starts_with("as_"));
        let principal = if impersonates {
            if !caller.has_role(ADMIN_ROLE) {
                return Err(ApiError::forbidden(
                    "role_required",
                    format!("explaining another principal's access needs the `{ADMIN_ROLE}` role"),
                    Vec::new(),
                ));
            }
            let level = match get("as_level") {
                Some(l) => Level::parse(l).ok_or_else(|| {
                    ApiError::invalid(format!("`as_level` is one of {}", Level::names()))
                })?,
                None => caller.level,
            };
            Principal::new(
                "explain",
                level,
                get("as_division")
                    .map(lianqiao_policy::division::canonical)
                    .unwrap_or(&caller.division),
                get("as_roles")
                    .map(|r| r.split(',').map(str::to_string).collect::<Vec<_>>())
                    .unwrap_or_default(),
                get("as_purpose").unwrap_or(&caller.purpose),
            )
        } else {
            caller.clone()
        };
        Ok(gateway
            .config
            .enforcer
            .explain(&principal, action, resource, division))
    })();
    let mut response = match result {
        Ok(body) => explained(body).into_response(),
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(facts);
    response
}
