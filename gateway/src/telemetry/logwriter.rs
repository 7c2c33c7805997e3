//! Where log lines go: a buffer in memory, written to stdout in batches by
//! a thread of its own, at least every 200 ms.
//!
//! Why not a writer thread woken per line (`tracing-appender`'s
//! non-blocking writer): with an access line per request that is a wake-up,
//! a context switch and a `write` per request, on a machine where every
//! core is already serving. Appending under a lock costs the request a
//! copy; the thread wakes on its timer, as Envoy flushes its access logs.
//! Nothing is dropped: a writer that finds more than `FLUSH_AT` bytes
//! pending writes them itself (back-pressure instead of loss), and the
//! guard writes what is left at exit.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in memory.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Pending bytes past which the writing thread flushes itself.
const FLUSH_AT: usize = 256 * 1024;

/// A `MakeWriter` for the log layers; cheap to clone.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

struct Shared {
    /// Lock order: `out` before `pending`, so batches leave in order.
    out: Mutex<Box<dyn Write + Send>>,
    pending: Mutex<Vec<u8>>,
    stop: AtomicBool,
}

/// Stops the flushing thread and writes what is left, when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BatchedWriter {
    /// Lines written through the returned writer reach `out` within
    /// `FLUSH_EVERY`; keep the guard until the process ends.
    pub fn start(out: impl Write + Send + 'static) -> (BatchedWriter, FlushGuard) {
        let shared = Arc::new(Shared {
            out: Mutex::new(Box::new(out)),
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            stop: AtomicBool::new(false),
        });
        let flusher = shared.clone();
        let thread = std::thread::Builder::new()
            .name("lianqiao-log".into())
            .spawn(move || {
                while !flusher.stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(FLUSH_EVERY);
                    flusher.flush();
                }
            })
            .map_err(|e| eprintln!("no log flushing thread ({e}); lines are written at exit"))
            .ok();
        (
            BatchedWriter {
                shared: shared.clone(),
            },
            FlushGuard { shared, thread },
        )
    }
}

impl Shared {
    fn append(&self, bytes: &[u8]) {
        let full = {
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            pending.extend_from_slice(bytes);
            pending.len() >= FLUSH_AT
        };
        if full {
            self.flush();
        }
    }

    fn flush(&self) {
        let Ok(mut out) = self.out.lock() else {
            return;
        };
        let batch = match self.pending.lock() {
            Ok(mut pending) if !pending.is_empty() => std::mem::take(&mut *pending),
            _ => return,
        };
        // stdout gone (a closed pipe) leaves nothing to report to.
        let _ = out.write_all(&batch);
        let _ = out.flush();
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.shared.flush();
    }
}

/// One event's writes.
pub struct Sink<'a>(&'a Shared);

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = Sink<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Sink(&self.shared)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An in-memory stdout for tests.
    #[derive(Clone, Default)]
    pub(crate) struct Out(Arc<Mutex<Vec<u8>>>);

    impl Write for Out {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    pub(crate) fn written(out: &Out) -> String {
        String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8")
    }

    #[test]
    fn lines_arrive_in_order_on_the_timer_and_the_rest_at_exit() {
        let out = Out::default();
        let (writer, guard) = BatchedWriter::start(out.clone());
        writer.make_writer().write_all(b"one\n").expect("write");
        writer.make_writer().write_all(b"two\n").expect("write");
        let began = std::time::Instant::now();
        while written(&out).is_empty() {
            assert!(began.elapsed() < Duration::from_secs(5), "never flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(written(&out), "one\ntwo\n");
        writer.make_writer().write_all(b"three\n").expect("write");
        drop(guard);
        assert_eq!(written(&out), "one\ntwo\nthree\n");
    }

    #[test]
    fn many_writers_lose_nothing_and_never_interleave_a_line() {
        let out = Out::default();
        let (writer, guard) = BatchedWriter::start(out.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    // Past FLUSH_AT, so writers flush themselves too.
                    for i in 0..5000 {
                        let line = format!("{t}:{i}:{}\n", "x".repeat(40));
                        writer
                            .make_writer()
                            .write_all(line.as_bytes())
                            .expect("write");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer thread");
        }
        drop(guard);
        let text = written(&out);
        assert_eq!(text.lines().count(), 20_000);
        for t in 0..4 {
            // Each writer's lines in the order it wrote them.
            let mine: Vec<usize> = text
                .lines()
                .filter(|l| l.starts_with(&format!("{t}:")))
                .map(|l| {
                    l.split(':')
                        .nth(1)
                        .and_then(|i| i.parse().ok())
                        .expect("index")
                })
                .collect();
            assert_eq!(mine, (0..5000).collect::<Vec<_>>());
        }
    }
}
