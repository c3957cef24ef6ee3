//! The pieces of a training step, each at 1 thread and at all threads:
//!
//! - `dense`: one Dense layer's forward + backward, built from its JSON spec as a
//!   model builds it: W1's Dense(128, relu) on 32 images (first layer: no input
//!   gradient) and W2's second Dense(512, relu) on 128 rows (with input gradient).
//! - `optimizer`: one Adam(1e-3) step over 100,480 parameters (W1's first Dense:
//!   kernel 784x128 and bias 128).
//! - `train_step`: one whole training step (gather, forward, loss, backward,
//!   update, metric) with sparse categorical cross-entropy, Adam(1e-3) and
//!   accuracy on synthetic float32 images: W1 (Flatten - Dense(128, relu) -
//!   Dense(10, softmax), batch 32), W3 (Conv2D(32, 3, relu) - MaxPooling2D(2) -
//!   Flatten - Dense(128, relu) - Dense(10, softmax), batch 64), and W3's
//!   convolution block alone before a Dense(10, softmax).
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

/// A model as the Python side sends it to the engine (`Sequential.compile` + `fit`).
fn model(input_shape: &[usize], layers: Value) -> Model {
    let spec = json!({"input_shape": input_shape, "seed": 0, "layers": layers});
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

fn flatten() -> Value {
    json!({"class_name": "Flatten", "config": {}})
}

fn softmax_output() -> Value {
    json!({"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}})
}

/// Conv2D(32, 3, relu) - MaxPooling2D(2): W3's convolution block.
fn conv_block() -> [Value; 2] {
    [
        json!({"class_name": "Conv2D", "config": {
            "filters": 32, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid",
            "dilation_rate": [1, 1], "activation": "relu"}}),
        json!({"class_name": "MaxPooling2D", "config": {"pool_size": [2, 2], "padding": "valid"}}),
    ]
}

fn train_step(c: &mut Criterion) {
    let [conv, pool] = conv_block();
    // (name, batch, per-sample input shape, layers)
    let cases = [
        (
            "W1 batch 32",
            32,
            vec![28, 28],
            json!([flatten(), dense_spec(128), softmax_output()]),
        ),
        (
            "W3 batch 64",
            64,
            vec![28, 28, 1],
            json!([conv, pool, flatten(), dense_spec(128), softmax_output()]),
        ),
        (
            "conv block + Dense(10), batch 64",
            64,
            vec![28, 28, 1],
            json!([conv, pool, flatten(), softmax_output()]),
        ),
    ];
    let pools = common::pools();
    let mut group = c.benchmark_group("train_step");
    for (name, batch, shape, layers) in cases {
        group.throughput(Throughput::Elements(batch as u64));
        let width: usize = shape.iter().product();
        // Images scaled to [0, 1) as users feed them (x / 255), labels 0..9.
        let x: Vec<f32> = common::random(batch * width, 4)
            .iter()
            .map(|v| v + 0.5)
            .collect();
        let y: Vec<f32> = (0..batch).map(|i| (i % 10) as f32).collect();
        let data = Dataset::new(Features::F32(&x), width, &y, 1, None).expect("valid dataset");
        let order: Vec<u32> = (0..batch as u32).collect();
        for p in &pools {
            let mut model = model(&shape, layers.clone());
            let mut totals = Totals::default();
            group.bench_function(BenchmarkId::new(name, &p.label), |bench| {
                p.pool.install(|| {
                    bench.iter(|| {
                        model
                            .train(&data, &order, batch, &mut totals)
                            .expect("training step")
                    });
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = dense, optimizer, train_step
}
criterion_main!(benches);
