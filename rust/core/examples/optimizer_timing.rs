//! Times one optimizer update of W1's weights (784-128-10: 101,770 values), the
//! step the fused loop and a custom loop's `apply_gradients` both run.
//! `cargo run --release --example optimizer_timing` (FERRAX_NUM_THREADS to vary).

use ferrax_core::init::InitSpec;
use ferrax_core::layers::Param;
use ferrax_core::optimizer::Optimizer;
use ferrax_core::parallel;
use ferrax_core::rng::Key;
use serde_json::json;
use std::time::Instant;

fn main() {
    let zeros = InitSpec::from_spec(&json!("zeros")).expect("known initializer");
    let shapes: [&[usize]; 4] = [&[784, 128], &[128], &[128, 10], &[10]];
    let mut params: Vec<Param> = shapes
        .iter()
        .map(|s| Param::new("w", s, &zeros, Key::new(0), None).expect("small weights fit"))
        .collect();
    for p in &mut params {
        for (i, g) in p.grad.iter_mut().enumerate() {
            *g = (i % 7) as f32 * 0.01 - 0.03;
        }
    }
    for name in ["sgd", "adam", "rmsprop", "nadam"] {
        let mut optimizer = Optimizer::from_spec(&json!({"name": name})).expect("known optimizer");
        let reps = 2000;
        let mut run = || {
            parallel::install(|| {
                let mut refs: Vec<&mut Param> = params.iter_mut().collect();
                optimizer.apply(&mut refs);
            })
        };
        run();
        let start = Instant::now();
        for _ in 0..reps {
            run();
        }
        let us = start.elapsed().as_secs_f64() / reps as f64 * 1e6;
        println!(
            "{name:<8} {us:8.2} us a step ({} threads)",
            parallel::configured_threads()
        );
    }
}
