//! `http`: outbound requests. No source config can grant it yet, so every
//! call is denied with a message that says so.

use crate::bindings::lianqiao::source::http::{Host, HttpError, Request, Response};
use crate::state::HostState;

impl Host for HostState {
    fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        Ok(Err(HttpError::Denied(format!(
            "source `{}` is granted no http capability (request to {})",
            self.grants.source, request.url
        ))))
    }
}
