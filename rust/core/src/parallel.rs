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

fn builder() -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new()
        .num_threads(configured_threads())
        .thread_name(|i| format!("ferrax-{i}"))
        .start_handler(|_| crate::denormals::flush_on_this_thread())
}

/// The engine's pool, created on first use. Calls enter it once (`install`) and
/// every kernel below runs on it.
pub fn pool() -> &'static rayon::ThreadPool {
    POOL.get_or_init(|| {
        builder()
            .build()
            .expect("failed to start the ferrax thread pool")
    })
}

thread_local! {
    /// Whether this thread is the pool's own worker 0 (see `adopt_this_thread`), and
    /// whether it is inside an engine call now.
    static OWNER: std::cell::Cell<(bool, bool)> = const { std::cell::Cell::new((false, false)) };
}

/// Makes the calling thread (Python's main thread, at import) worker 0 of the pool,
/// beside `configured_threads() - 1` others, if the pool does not exist yet and has
/// more than one thread. Its calls then run on it in place: handing a call to another
/// thread and sleeping until it ends costs about 20 µs in a virtual machine (two
/// wake-ups), which a custom loop pays several times a step. Calls from other
/// threads are taken by the other workers, as before.
pub fn adopt_this_thread() {
    if configured_threads() < 2 {
        return; // (a pool of one thread would have no one for other threads' calls)
    }
    let mut adopted = false;
    POOL.get_or_init(|| {
        adopted = true;
        builder()
            .use_current_thread()
            .build()
            .expect("failed to start the ferrax thread pool")
    });
    if adopted {
        // (its float mode is set per call: between calls it runs Python)
        OWNER.set((true, false));
        OWNER_EXISTS.store(true, Ordering::Relaxed);
    }
}

// Between engine calls (a custom loop's Python between tape_forward, tape_backward
// and the optimizer) rayon's workers fall asleep, and waking them costs each call tens
// of µs. After a call they spin for a while instead, as OpenMP's threads do, until the
// next call arrives or the time is up. (No effect on results: only on who waits how.)
/// Engine calls running now: spinning workers stop as soon as one starts.
static CALLS: AtomicUsize = AtomicUsize::new(0);
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
    let (owner, in_call) = OWNER.get();
    if owner && !in_call {
        // The pool's worker 0 starts a call: in place, in the engine's float mode.
        let out = {
            let _call = Call::start(true);
            crate::denormals::on_this_thread(|| pool.install(f))
        };
        keep_awake(pool);
        return out;
    }
    let spin = spin_us();
    if spin == 0 || pool.current_thread_index().is_some() {
        return pool.install(f); // (a call from inside the pool runs in place)
    }
    let out = {
        let _call = Call::start(false);
        pool.install(f)
    };
    keep_awake(pool);
    out
}

/// One engine call in progress, counted in `CALLS` (and, made by worker 0, marked
/// in `OWNER`) until dropped, also on a panic.
struct Call {
    by_owner: bool,
}

impl Call {
    fn start(by_owner: bool) -> Self {
        CALLS.fetch_add(1, Ordering::SeqCst);
        if by_owner {
            OWNER.set((true, true));
        }
        Call { by_owner }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.by_owner {
            OWNER.set((true, false));
        }
        CALLS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether worker 0 is a thread that runs Python between calls (it never spins).
static OWNER_EXISTS: AtomicBool = AtomicBool::new(false);

/// Has the workers that do not run Python between calls (all but an adopted worker 0)
/// spin for `spin_us`, until the next call.
fn keep_awake(pool: &rayon::ThreadPool) {
    let spin = spin_us();
    if spin == 0 {
        return;
    }
    let workers = pool.current_num_threads() - usize::from(OWNER_EXISTS.load(Ordering::Relaxed));
    for _ in 0..workers {
        if SPINNING.fetch_add(1, Ordering::SeqCst) >= workers {
            SPINNING.fetch_sub(1, Ordering::SeqCst); // (enough are spinning already)
            break;
        }
        pool.spawn(move || {
            let end = std::time::Instant::now() + std::time::Duration::from_micros(spin);
            // (worker 0, running Python between calls, never spins)
            let owner = OWNER.get().0;
            while !owner && CALLS.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < end {
                std::hint::spin_loop();
            }
            SPINNING.fetch_sub(1, Ordering::SeqCst);
        });
    }
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
