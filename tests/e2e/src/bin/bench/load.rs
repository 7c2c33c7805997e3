//! An HTTP/1.1 load generator for the side-by-side benchmark: closed-loop
//! saturation (each connection sends its next request when the last one is
//! answered) and open-loop pacing at a fixed rate, with latency measured
//! from when each request *should* have been sent, so a stalled server is
//! not hidden by the generator waiting for it (coordinated omission).
//!
//! Every connection is a kept-alive hyper connection of its own; a
//! connection the server closes is opened again and counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One route of one server, as the generator sends it.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    /// Distinct queries: when not empty, request n (over all the run's
    /// connections) asks `distinct[n % len]` instead of `path`, so no two
    /// requests close together are alike (no coalescing, no cache hit).
    pub distinct: Arc<[String]>,
    /// The run's request counter for `distinct`, shared by its connections.
    pub sent: Arc<AtomicU64>,
    pub headers: Vec<(String, String)>,
    /// Bodies shorter than this count as errors (a guard against measuring
    /// an empty or error answer that happens to be 200).
    pub min_body: usize,
}

impl Target {
    /// The path of the next request.
    pub fn next_path(&self) -> &str {
        if self.distinct.is_empty() {
            return &self.path;
        }
        let n = self.sent.fetch_add(1, Ordering::Relaxed) as usize;
        &self.distinct[n % self.distinct.len()]
    }
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Answers with status 200 and a full body, inside the window.
    pub ok: u64,
    /// Other statuses, short bodies and failed connections, by status (0:
    /// connection failure).
    pub errors: Vec<(u16, u64)>,
    pub window: Duration,
    /// Latencies of the `ok` answers (closed loop: from send; open loop:
    /// from the scheduled send time).
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
    }

    pub fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.latencies.extend(other.latencies);
        for (status, n) in other.errors {
            match self.errors.iter_mut().find(|(s, _)| *s == status) {
                Some((_, m)) => *m += n,
                None => self.errors.push((status, n)),
            }
        }
    }

    fn error(&mut self, status: u16) {
        match self.errors.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.errors.push((status, 1)),
        }
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One request on `sender`: its status if the body was complete and long
/// enough (status 0 on a transport failure).
async fn once(sender: &mut SendRequest<Empty<Bytes>>, target: &Target) -> Result<(), u16> {
    let mut request = hyper::Request::get(target.next_path()).header("host", "bench");
    for (name, value) in &target.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Empty::new()).map_err(|_| 0u16)?;
    if sender.ready().await.is_err() {
        return Err(0);
    }
    let response = sender.send_request(request).await.map_err(|_| 0u16)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| 0u16)?
        .to_bytes();
    if status == 200 && body.len() >= target.min_body {
        Ok(())
    } else {
        Err(status.max(1))
    }
}

/// Closed loop: `connections` connections as fast as the server answers
/// for `warmup` + `window`; only answers completed inside the window count.
pub async fn saturate(
    target: &Target,
    connections: usize,
    warmup: Duration,
    window: Duration,
) -> Outcome {
    let began = Instant::now();
    let opens = began + warmup;
    let closes = opens + window;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Outcome::default();
            let mut sender = None;
            while Instant::now() < closes {
                if sender.is_none() {
                    match connect(target.addr).await {
                        Ok(s) => sender = Some(s),
                        Err(_) => {
                            seen.error(0);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(s) = sender.as_mut() else { continue };
                let sent = Instant::now();
                let answer = once(s, &target).await;
                let done = Instant::now();
                if answer == Err(0) {
                    sender = None;
                }
                if sent < opens || done > closes {
                    continue;
                }
                match answer {
                    Ok(()) => {
                        seen.ok += 1;
                        seen.latencies.push(done - sent);
                    }
                    Err(status) => seen.error(status),
                }
            }
            seen
        }));
    }
    gather(tasks, window).await
}

/// Open loop: requests scheduled every `1/rate` s for `window` (after
/// `warmup` at the same rate), sent on up to `connections` connections;
/// each latency runs from the request's scheduled time, so time spent
/// waiting for a free connection behind a slow answer is counted.
pub async fn paced(
    target: &Target,
    rate: f64,
    connections: usize,
    warmup: Duration,
    window: Duration,
) -> Outcome {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total_requests = ((warmup + window).as_secs_f64() * rate) as u64;
    let measured_from = (warmup.as_secs_f64() * rate) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let target = target.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Outcome::default();
            let mut sender = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total_requests {
                    break;
                }
                let scheduled = start + interval.mul_f64(i as f64);
                // tokio's timer wakes up to a millisecond late: sleep to just
                // before the slot, then yield until it comes, so the
                // generator's own lateness is not charged to the server.
                tokio::time::sleep_until(scheduled - Duration::from_micros(1500)).await;
                while tokio::time::Instant::now() < scheduled {
                    tokio::task::yield_now().await;
                }
                if sender.is_none() {
                    sender = connect(target.addr).await.ok();
                }
                let answer = match sender.as_mut() {
                    Some(s) => once(s, &target).await,
                    None => Err(0),
                };
                if answer == Err(0) {
                    sender = None;
                }
                if i < measured_from {
                    continue;
                }
                match answer {
                    Ok(()) => {
                        seen.ok += 1;
                        seen.latencies.push(scheduled.elapsed());
                    }
                    Err(status) => seen.error(status),
                }
            }
            seen
        }));
    }
    gather(tasks, window).await
}

/// The connections' outcomes as one over `window`.
async fn gather(tasks: Vec<tokio::task::JoinHandle<Outcome>>, window: Duration) -> Outcome {
    let mut total = Outcome {
        window,
        ..Outcome::default()
    };
    for task in tasks {
        if let Ok(seen) = task.await {
            total.merge(seen);
        }
    }
    total
}
