//! Where a training epoch's time goes: W1 (784-128-10, batch 32), W2
//! (784-512-512-10, batch 128) or G (a graph: 784-128, then a Dense(128) whose
//! output is added to its input (fan-out and a merge), then 10, batch 32) on
//! 60,000 synthetic 28x28 images, Adam(1e-3),
//! timed part by part (gather, forward, loss, backward, optimizer, metrics),
//! with the heap allocations made per step.
//!
//! `cargo run --release -p ferrax-core --features phase-timers --example train_phases [W1|W2|G] [epochs]`
//! (`FERRAX_NUM_THREADS` sets the threads.)

use ferrax_core::data::{Dataset, Features};
use ferrax_core::model::{Model, Totals};
use ferrax_core::{parallel, phases};
use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The system allocator, counting calls.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn dense(units: usize, activation: &str) -> Value {
    json!({"class_name": "Dense", "config": {"units": units, "activation": activation}})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workload = args.get(1).map_or("W1", String::as_str);
    let epochs: u64 = args.get(2).and_then(|e| e.parse().ok()).unwrap_or(3);
    let (hidden, batch) = match workload {
        "W1" | "G" => (vec![128], 32),
        "W2" => (vec![512, 512], 128),
        other => panic!("unknown workload {other}: W1, W2 or G"),
    };
    let mut layers = vec![json!({"class_name": "Flatten", "config": {}})];
    layers.extend(hidden.iter().map(|&u| dense(u, "relu")));
    let mut inbound: Vec<Vec<usize>> = (0..layers.len()).map(|i| vec![i]).collect();
    if workload == "G" {
        // values: 2 = Dense(128) out; 3 = Dense(128)(2); 4 = Add(2, 3)
        layers.push(dense(128, "relu"));
        layers.push(json!({"class_name": "Add", "config": {}}));
        inbound.extend([vec![2], vec![2, 3]]);
    }
    inbound.push(vec![layers.len()]);
    layers.push(dense(10, "softmax"));
    let spec = json!({"input_shape": [28, 28], "seed": 0, "layers": layers, "inbound": inbound});
    let mut model = Model::from_spec(&spec).expect("valid model spec");
    model
        .compile(&json!({
            "loss": "sparse_categorical_crossentropy",
            "optimizer": {"name": "adam", "learning_rate": 1e-3},
            "metrics": ["sparse_categorical_accuracy"],
        }))
        .expect("valid compile spec");

    // Pixel-like values in [0, 1] and labels 0..9, made by a fixed hash.
    let (n, width): (usize, usize) = (60_000, 784);
    let x: Vec<f32> = (0..n * width)
        .map(|i| (i.wrapping_mul(2_654_435_761) % 256) as f32 / 255.0)
        .collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 10) as f32).collect();
    let data = Dataset::new(Features::F32(&x), width, &y, 1, None).expect("valid dataset");

    println!(
        "{workload}, batch {batch}, {} threads; per step, in µs:",
        parallel::configured_threads()
    );
    for epoch in 0..epochs {
        let order = model.shuffled_order(n, epoch);
        phases::take();
        let allocations = ALLOCATIONS.load(Ordering::Relaxed);
        let start = Instant::now();
        parallel::install(|| {
            model
                .train(&data, &order, batch, &mut Totals::default())
                .expect("training")
        });
        let seconds = start.elapsed().as_secs_f64();
        let steps = n.div_ceil(batch) as f64;
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
        let parts: Vec<String> = phases::NAMES
            .iter()
            .zip(phases::take())
            .map(|(name, ns)| format!("{name} {:.1}", ns as f64 / 1e3 / steps))
            .collect();
        println!(
            "epoch {seconds:.3} s: step {:.1} = {}; {:.1} allocations a step",
            seconds * 1e6 / steps,
            parts.join(", "),
            allocations as f64 / steps
        );
    }
}
