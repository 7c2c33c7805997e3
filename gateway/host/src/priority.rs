//! Thread priority: the gateway runs wide requests (a region query over a
//! hundred sources) on threads with a raised nice value, so the kernel
//! prefers a district user's request to them. Work a thread hands to
//! another thread must keep that priority, and on Linux a nice value is a
//! thread's own, inherited by the threads it creates: SQLite's work runs
//! on sqlx's connection threads, which take the nice value of whichever
//! thread opened the connection (see `capability::sql`).

// The only unsafe in the host: four libc calls that take no pointers.
#![allow(unsafe_code)]

use std::cell::Cell;

/// Raise the calling thread's nice value to the process's (its main
/// thread's) plus `nice`, at most 19. Absolute, not relative, because a
/// thread inherits the nice value of the thread that made it. A failure
/// (e.g. a seccomp filter) leaves the thread at its priority, which is
/// only less fair, never wrong.
pub fn lower_this_thread(nice: i32) {
    // SAFETY: getpid, gettid, getpriority and setpriority take no pointers.
    unsafe {
        let base = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, (base + nice).min(19));
    }
    LOWERED.with(|l| l.set(Some(nice > 0)));
}

thread_local! {
    /// Whether this thread runs below the process's priority: read once
    /// per thread (a thread's nice value is set when it starts and never
    /// changes after).
    static LOWERED: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Whether the calling thread runs at a lower priority than the process.
pub fn this_thread_is_lowered() -> bool {
    LOWERED.with(|l| {
        if let Some(lowered) = l.get() {
            return lowered;
        }
        // SAFETY: as above.
        let lowered = unsafe {
            let base = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
            let own = libc::getpriority(
                libc::PRIO_PROCESS,
                libc::syscall(libc::SYS_gettid) as libc::id_t,
            );
            own > base
        };
        l.set(Some(lowered));
        lowered
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowered_thread_knows_it_and_its_children_inherit_it() {
        assert!(!this_thread_is_lowered());
        let (own, child) = std::thread::spawn(|| {
            lower_this_thread(3);
            let child = std::thread::spawn(this_thread_is_lowered).join().unwrap();
            (this_thread_is_lowered(), child)
        })
        .join()
        .unwrap();
        assert!(own);
        assert!(child, "a thread made by a lowered thread is lowered too");
        assert!(!this_thread_is_lowered());
    }
}
