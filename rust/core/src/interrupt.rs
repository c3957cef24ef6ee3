//! Ctrl-C during long engine calls. The engine's sequential loops (batches, and
//! layers within a pass) `poll` between steps; at most every `POLL_INTERVAL` a
//! poll asks the checker the Python binding installs whether a signal is pending.
//! Once one is, the call stops at its next check, before the optimizer touches a
//! weight, so the model is left as it was after its last whole step.

use crate::error::{Error, Result};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often a poll consults the checker (the bound is 0.2 s).
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

static CHECKER: OnceLock<fn() -> bool> = OnceLock::new();
static PENDING: AtomicBool = AtomicBool::new(false);
/// Counts each raising and each clearing of `PENDING`: a call from another thread
/// that overlapped an interrupted one (its work may have stopped early too) sees
/// the count change, or the flag still up.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static LAST_POLL: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Installs `checker`: true when the call should stop (a signal is pending). It
/// runs on the thread that polls; it must be cheap and must not block.
pub fn set_checker(checker: fn() -> bool) {
    let _ = CHECKER.set(checker);
}

/// Whether the running call should stop; consults the checker at most every
/// `POLL_INTERVAL` on this thread, and stays true until `take`.
pub fn poll() -> bool {
    if PENDING.load(Ordering::Relaxed) {
        return true;
    }
    let Some(checker) = CHECKER.get() else {
        return false;
    };
    let now = Instant::now();
    let due = LAST_POLL.with(|last| match last.get() {
        Some(t) if now.duration_since(t) < POLL_INTERVAL => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due && checker() {
        INTERRUPTS.fetch_add(1, Ordering::SeqCst);
        PENDING.store(true, Ordering::SeqCst);
        return true;
    }
    false
}

/// `Err(interrupted)` when a poll has seen a pending signal.
pub fn check() -> Result<()> {
    if poll() {
        return Err(interrupted());
    }
    Ok(())
}

/// Whether a poll has seen a pending signal since the last `take`; clears it.
pub fn take() -> bool {
    let was = PENDING.swap(false, Ordering::SeqCst);
    if was {
        // (a call that began while the flag was up sees the count change too)
        INTERRUPTS.fetch_add(1, Ordering::SeqCst);
    }
    was
}

/// Whether the flag a poll raised is still up (until the interrupted call's `take`).
pub fn pending() -> bool {
    PENDING.load(Ordering::SeqCst)
}

/// The error an interrupted call returns (the binding raises the signal's own
/// exception, KeyboardInterrupt for Ctrl-C, in its place).
pub fn interrupted() -> Error {
    Error("interrupted".into())
}

/// How many interrupts there have been (compare before and after a call).
pub fn count() -> u64 {
    INTERRUPTS.load(Ordering::SeqCst)
}
