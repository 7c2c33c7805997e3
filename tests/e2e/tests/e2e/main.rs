//! End-to-end tests: one binary, so wasmtime and the gateway link once.
//! Run with `cargo xtask test`, which builds the plugins first.

mod access;
mod audit;
mod bad_params;
mod cases;
mod config_errors;
mod conformance;
mod console;
mod console_browser;
mod contract;
mod differencing;
mod disclosure;
mod disclosure_props;
mod districts;
mod federation;
mod plugin_faults;
mod policy_props;
mod probe;
mod prometheus;
mod received;
mod region;
mod reload;
mod sandbox;
mod serving;
mod telemetry;
mod tls;
mod traces;
mod walkthrough;
mod whistle;
