//! Where training time goes, part by part of a batch, for profiling.
//!
//! With the `phase-timers` feature, `Model::train` adds the wall time of each
//! part of every batch to process-wide totals (`take` reads and clears them):
//! `cargo run --release -p ferrax-core --features phase-timers --example train_phases`.
//! Without it, `Clock` is an empty type and timing compiles to nothing.

/// The parts of a training batch, in the order they run.
pub const NAMES: [&str; 6] = [
    "gather",
    "forward",
    "loss",
    "backward",
    "optimizer",
    "metrics",
];

pub const GATHER: usize = 0;
pub const FORWARD: usize = 1;
pub const LOSS: usize = 2;
pub const BACKWARD: usize = 3;
pub const OPTIMIZER: usize = 4;
pub const METRICS: usize = 5;

#[cfg(feature = "phase-timers")]
mod enabled {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    static TOTALS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

    /// Times consecutive parts: each `lap` charges the time since the previous one.
    pub struct Clock(Instant);

    impl Clock {
        pub fn start() -> Self {
            Clock(Instant::now())
        }

        pub fn lap(&mut self, phase: usize) {
            let now = Instant::now();
            let ns = (now - self.0).as_nanos() as u64;
            TOTALS[phase].fetch_add(ns, Ordering::Relaxed);
            self.0 = now;
        }
    }

    /// Nanoseconds spent in each part since the last call.
    pub fn take() -> [u64; 6] {
        std::array::from_fn(|i| TOTALS[i].swap(0, Ordering::Relaxed))
    }
}

#[cfg(not(feature = "phase-timers"))]
mod enabled {
    /// Without the `phase-timers` feature: nothing is timed.
    pub struct Clock;

    impl Clock {
        #[inline(always)]
        pub fn start() -> Self {
            Clock
        }

        #[inline(always)]
        pub fn lap(&mut self, _phase: usize) {}
    }

    /// Always zeros without the `phase-timers` feature.
    pub fn take() -> [u64; 6] {
        [0; 6]
    }
}

pub use enabled::{take, Clock};
