//! What every bench target shares: the thread pools to measure under, criterion's
//! settings, and deterministic inputs.

use criterion::Criterion;
use ferrax_core::parallel;
use ferrax_core::rng::Key;
use std::time::Duration;

/// A rayon pool and the label its results carry ("1t", "2t", ...).
pub struct Pool {
    pub label: String,
    pub pool: rayon::ThreadPool,
}

/// One pool of 1 thread and one of all the engine's threads (`FERRAX_NUM_THREADS`,
/// else every core), built as the engine builds its own; just the first where
/// those are the same. Benchmarks run inside `pool.install`, entered once per
/// benchmark as the engine enters its pool once per call.
pub fn pools() -> Vec<Pool> {
    let all = parallel::configured_threads();
    let mut sizes = vec![1];
    if all > 1 {
        sizes.push(all);
    }
    sizes
        .into_iter()
        .map(|n| Pool {
            label: format!("{n}t"),
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(move |i| format!("bench-{n}t-{i}"))
                .start_handler(|_| ferrax_core::denormals::flush_on_this_thread())
                .build()
                .expect("failed to start a rayon pool"),
        })
        .collect()
}

/// Short measurements, so that the whole `cargo bench` takes a few minutes.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

/// `n` values uniform in [-0.5, 0.5), the same on every run.
pub fn random(n: usize, seed: u64) -> Vec<f32> {
    let key = Key::new(seed);
    (0..n).map(|i| key.uniform_f32(i as u64) - 0.5).collect()
}
