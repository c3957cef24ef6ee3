//! The thread pool and helpers that go parallel only when it pays.

use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Below this many elements, elementwise work runs serially: waking threads
/// costs more than it saves (PyTorch uses the same threshold).
pub const PARALLEL_THRESHOLD: usize = 32_768;

static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();

/// Threads to use: `FERRAX_NUM_THREADS` if set, else the machine's cores.
pub fn configured_threads() -> usize {
    std::env::var("FERRAX_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The engine's pool, created on first use. Calls enter it once (`install`) and
/// every kernel below runs on it.
pub fn pool() -> &'static rayon::ThreadPool {
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(configured_threads())
            .thread_name(|i| format!("ferrax-{i}"))
            .start_handler(|_| crate::denormals::flush_on_this_thread())
            .build()
            .expect("failed to start the ferrax thread pool")
    })
}

// Between engine calls (a custom loop's Python between tape_forward, tape_backward
// and the optimizer) rayon's workers fall asleep, and waking them costs each call tens
// of µs. After a call they spin for a while instead, as OpenMP's threads do, until the
// next call arrives or the time is up. (No effect on results: only on who waits how.)
static STOP_SPINNING: AtomicBool = AtomicBool::new(false);
static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// How long the workers stay awake after a call, in µs: `FERRAX_SPIN_US` (0: not at
/// all), 300 by default.
fn spin_us() -> u64 {
    static SPIN: OnceLock<u64> = OnceLock::new();
    *SPIN.get_or_init(|| {
        std::env::var("FERRAX_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(300)
    })
}

/// Run `f` inside the engine's pool.
pub fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = pool();
    let spin = spin_us();
    if spin == 0 || pool.current_thread_index().is_some() {
        return pool.install(f); // (a call from inside the pool runs in place)
    }
    // Spinning workers leave their spin as soon as they see this, and take the call.
    STOP_SPINNING.store(true, Ordering::SeqCst);
    let out = pool.install(f);
    STOP_SPINNING.store(false, Ordering::SeqCst);
    for _ in 0..pool.current_num_threads() {
        if SPINNING.fetch_add(1, Ordering::SeqCst) >= pool.current_num_threads() {
            SPINNING.fetch_sub(1, Ordering::SeqCst); // (enough are spinning already)
            break;
        }
        pool.spawn(move || {
            let end = std::time::Instant::now() + std::time::Duration::from_micros(spin);
            while !STOP_SPINNING.load(Ordering::Relaxed) && std::time::Instant::now() < end {
                std::hint::spin_loop();
            }
            SPINNING.fetch_sub(1, Ordering::SeqCst);
        });
    }
    out
}

/// Apply `f` to `rows` chunks of `width` elements, in parallel when big enough.
pub fn for_each_row(data: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if width == 0 {
        return;
    }
    if data.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
        data.par_chunks_mut(width)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    } else {
        data.chunks_mut(width)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    }
}

/// Apply `f` to blocks of at most `block` elements, with the block's offset.
pub fn for_each_block(data: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    const BLOCK: usize = 8192;
    if data.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
        data.par_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(i, b)| f(i * BLOCK, b));
    } else {
        data.chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(i, b)| f(i * BLOCK, b));
    }
}

/// Sum of squares in f64 over fixed-size chunks combined in a fixed order, so
/// the result is the same whatever the number of threads.
pub fn sum_squares(data: &[f32]) -> f64 {
    const CHUNK: usize = 4096;
    let partial: Vec<f64> = if data.len() >= PARALLEL_THRESHOLD {
        data.par_chunks(CHUNK)
            .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum())
            .collect()
    } else {
        data.chunks(CHUNK)
            .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum())
            .collect()
    };
    partial.iter().sum()
}
