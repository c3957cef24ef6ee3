//! The pieces of a training step, each at 1 thread and at all threads:
//!
//! - `dense`: one Dense layer's forward + backward, built from its JSON spec as a
//!   model builds it: W1's Dense(128, relu) on 32 images (first layer: no input
//!   gradient) and W2's second Dense(512, relu) on 128 rows (with input gradient).
//! - `optimizer`: one Adam(1e-3) step over 100,480 parameters (W1's first Dense:
//!   kernel 784x128 and bias 128).
//! - `train_step`: one whole W1 step, Flatten - Dense(128, relu) - Dense(10,
//!   softmax), sparse categorical cross-entropy, Adam(1e-3), accuracy, on a batch
//!   of 32 synthetic float32 images: gather, forward, loss, backward, update, metric.
//!
//! `cargo bench -p ferrax-core --bench training`. Throughput for `train_step` is
//! in samples/s (elements = images).

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrax_core::data::{Dataset, Features};
use ferrax_core::layers::{self, Ctx, Layer, Param};
use ferrax_core::model::{Model, Totals};
use ferrax_core::optimizer::Optimizer;
use ferrax_core::rng::Key;
use serde_json::{json, Value};

fn dense_spec(units: usize) -> Value {
    json!({"class_name": "Dense", "config": {"units": units, "activation": "relu"}})
}

fn build_dense(inputs: usize, units: usize) -> Box<dyn Layer> {
    layers::build(&dense_spec(units), &[inputs], Key::new(0)).expect("valid Dense spec")
}

/// (name, rows, inputs, units, whether the input gradient is computed)
const DENSE_CASES: [(&str, usize, usize, usize, bool); 2] = [
    ("W1 32x784->128", 32, 784, 128, false),
    ("W2 128x512->512 +dx", 128, 512, 512, true),
];

fn dense(c: &mut Criterion) {
    let pools = common::pools();
    let mut group = c.benchmark_group("dense_fwd_bwd");
    for (name, rows, inputs, units, with_dx) in DENSE_CASES {
        let x = common::random(rows * inputs, 1);
        let dy_init = common::random(rows * units, 2);
        let ctx = Ctx {
            training: true,
            key: Key::new(3),
            mask: None,
        };
        for p in &pools {
            let mut layer = build_dense(inputs, units);
            let mut y = vec![0.0f32; rows * units];
            let mut dy = dy_init.clone();
            let mut dx = vec![0.0f32; rows * inputs];
            group.bench_function(BenchmarkId::new(name, &p.label), |bench| {
                p.pool.install(|| {
                    bench.iter(|| {
                        layer.forward(&x, &mut y, rows, &ctx);
                        // backward may overwrite dy (the relu mask): start from the same values.
                        dy.copy_from_slice(&dy_init);
                        let dx = with_dx.then_some(&mut dx[..]);
                        layer.backward(&x, &y, &mut dy, dx, rows);
                    });
                });
            });
        }
    }
    group.finish();
}

fn optimizer(c: &mut Criterion) {
    let pools = common::pools();
    let mut group = c.benchmark_group("optimizer_step");
    let spec = json!({"name": "adam", "learning_rate": 1e-3});
    for p in &pools {
        let mut layer = build_dense(784, 128);
        let mut params: Vec<&mut Param> = layer.params_mut().iter_mut().collect();
        for (i, param) in params.iter_mut().enumerate() {
            let grad = common::random(param.grad.len(), 10 + i as u64);
            param.grad_slice_mut().copy_from_slice(&grad);
        }
        let count: usize = params.iter().map(|p| p.value.len()).sum();
        group.throughput(Throughput::Elements(count as u64));
        let mut adam = Optimizer::from_spec(&spec).expect("valid optimizer spec");
        group.bench_function(BenchmarkId::new("adam 100k", &p.label), |bench| {
            p.pool.install(|| bench.iter(|| adam.apply(&mut params)));
        });
    }
    group.finish();
}

/// W1 as the Python side sends it to the engine (`Sequential.compile` + `fit`).
fn w1_model() -> Model {
    let spec = json!({
        "input_shape": [28, 28],
        "seed": 0,
        "layers": [
            {"class_name": "Flatten", "config": {}},
            dense_spec(128),
            {"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}},
        ],
    });
    let mut model = Model::from_spec(&spec).expect("valid model spec");
    model
        .compile(&json!({
            "loss": "sparse_categorical_crossentropy",
            "optimizer": {"name": "adam", "learning_rate": 1e-3},
            "metrics": ["sparse_categorical_accuracy"],
        }))
        .expect("valid compile spec");
    model
}

fn train_step(c: &mut Criterion) {
    const BATCH: usize = 32;
    let pools = common::pools();
    let mut group = c.benchmark_group("train_step");
    group.throughput(Throughput::Elements(BATCH as u64));
    // Images scaled to [0, 1) as users feed them (x / 255), labels 0..9.
    let x: Vec<f32> = common::random(BATCH * 784, 4)
        .iter()
        .map(|v| v + 0.5)
        .collect();
    let y: Vec<f32> = (0..BATCH).map(|i| (i % 10) as f32).collect();
    let data = Dataset::new(Features::F32(&x), 784, &y, 1, None).expect("valid dataset");
    let order: Vec<u32> = (0..BATCH as u32).collect();
    for p in &pools {
        let mut model = w1_model();
        let mut totals = Totals::default();
        group.bench_function(BenchmarkId::new("W1 batch 32", &p.label), |bench| {
            p.pool.install(|| {
                bench.iter(|| {
                    model
                        .train(&data, &order, BATCH, &mut totals)
                        .expect("training step")
                });
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = dense, optimizer, train_step
}
criterion_main!(benches);
