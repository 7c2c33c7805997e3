//! Realistic simulators of the upstream systems that have no public copy:
//! the region's party-link system and the city's integrated platform. Each
//! keeps its own conventions, auth, paging and errors, and both take
//! injected faults, so plugins must really adapt and resilience is testable.

pub mod city_platform;
pub mod faults;
pub mod party_link;
pub mod world;

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Serve `router` on `addr` until the process ends; returns the bound
/// address through `bound` first (port 0 picks a free one).
pub async fn serve(
    router: axum::Router,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    Ok((bound, task))
}
