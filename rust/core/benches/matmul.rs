//! The engine's GEMM (`ferrax_core::matmul::Gemm`) at the shapes issue 4 sets
//! targets for: 1024x1024x1024 and the layer shapes of W1 and W2, forward and the
//! two backward products (dW = Xᵀ·dY through `trans_a`, dX = dY·Wᵀ through
//! `trans_b`, as `layers/dense.rs` runs them), at 1 thread and at all threads.
//!
//! `cargo bench -p ferrax-core --bench matmul`; throughput is reported in
//! elements/s where one element is one floating-point operation (2·m·k·n per
//! product), so "Gelem/s" reads as GFLOP/s. Compare with numpy's OpenBLAS at the
//! same shapes: `python benches/matmul_numpy.py`.

mod common;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use ferrax_core::matmul::Gemm;
use std::hint::black_box;

/// (name, product): C (m×n) = op(A) (m×k) · op(B) (k×n).
fn shapes() -> Vec<(&'static str, Gemm)> {
    vec![
        // W1: Dense(128) on a batch of 32 flattened images.
        ("W1 fwd 32x784x128", Gemm::new(32, 784, 128)),
        ("W1 dW 784x32x128 At", Gemm::new(784, 32, 128).trans_a()),
        ("W1 dX 32x128x784 Bt", Gemm::new(32, 128, 784).trans_b()),
        // W2: Dense(512) - Dense(512) on a batch of 128.
        ("W2 fwd 128x784x512", Gemm::new(128, 784, 512)),
        ("W2 dW 784x128x512 At", Gemm::new(784, 128, 512).trans_a()),
        ("W2 fwd 128x512x512", Gemm::new(128, 512, 512)),
        ("W2 dW 512x128x512 At", Gemm::new(512, 128, 512).trans_a()),
        ("W2 dX 128x512x512 Bt", Gemm::new(128, 512, 512).trans_b()),
        ("1024x1024x1024", Gemm::new(1024, 1024, 1024)),
    ]
}

fn matmul(c: &mut Criterion) {
    let pools = common::pools();
    let mut group = c.benchmark_group("matmul");
    // Equal iteration counts per sample: 1024^3 (tens of ms) then fits the 3 s budget,
    // where criterion's default linear ramp (1, 2, ... 20 iterations) would not.
    group.sampling_mode(SamplingMode::Flat);
    for (name, g) in shapes() {
        // The stored operands have m·k and k·n elements whatever the transposes.
        let a = common::random(g.m * g.k, 1);
        let b = common::random(g.k * g.n, 2);
        let mut out = vec![0.0f32; g.m * g.n];
        group.throughput(Throughput::Elements(2 * (g.m * g.k * g.n) as u64));
        for p in &pools {
            group.bench_function(BenchmarkId::new(name, &p.label), |bench| {
                p.pool.install(|| {
                    bench.iter(|| g.run(black_box(&a), black_box(&b), &mut out, false));
                });
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = matmul
}
criterion_main!(benches);
