//! The fixed cost of one engine call: entering the pool with nothing to do, and
//! with a join (the smallest parallel work), from this thread as Python's main
//! thread makes calls (worker 0 of the pool) and as any other thread does.
//! `cargo run --release --example install_cost`.

use ferrax_core::parallel;
use std::time::Instant;

fn per_call_us(reps: usize) -> (f64, f64) {
    let start = Instant::now();
    for _ in 0..reps {
        parallel::install(|| std::hint::black_box(1));
    }
    let empty = start.elapsed().as_secs_f64() / reps as f64 * 1e6;
    let start = Instant::now();
    for _ in 0..reps {
        parallel::install(|| rayon::join(|| std::hint::black_box(1), || std::hint::black_box(2)));
    }
    let joined = start.elapsed().as_secs_f64() / reps as f64 * 1e6;
    (empty, joined)
}

fn main() {
    let reps = 20_000;
    parallel::adopt_this_thread();
    let (empty, joined) = per_call_us(reps);
    let other = std::thread::spawn(move || per_call_us(reps))
        .join()
        .expect("the thread ran");
    println!(
        "{} threads; per call: from worker 0 {empty:.2} us empty, {joined:.2} us with a join; \
         from another thread {:.2} us, {:.2} us",
        parallel::configured_threads(),
        other.0,
        other.1
    );
}
