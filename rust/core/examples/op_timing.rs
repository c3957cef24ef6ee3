//! Times the ops a custom Dense layer is made of (`ops.relu(ops.matmul(x, w) + b)`),
//! forward and backward, at W1's shapes (a batch of 32, 784 -> 128), against the
//! built-in Dense. `cargo run --release --example op_timing`.

use ferrax_core::layers::{self, Ctx};
use ferrax_core::ops::{self, Operand};
use ferrax_core::rng::Key;
use serde_json::json;
use std::time::Instant;

fn time(label: &str, reps: usize, mut f: impl FnMut()) {
    f();
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    let us = start.elapsed().as_secs_f64() / reps as f64 * 1e6;
    println!("{label:<28} {us:8.2} us");
}

fn main() {
    let (rows, inf, units) = (32, 784, 128);
    let x: Vec<f32> = (0..rows * inf)
        .map(|i| (i % 17) as f32 / 17.0 - 0.4)
        .collect();
    let w: Vec<f32> = (0..inf * units)
        .map(|i| (i % 13) as f32 / 130.0 - 0.05)
        .collect();
    let b: Vec<f32> = vec![0.01; units];
    let h = Operand::batched(&[units]);
    let empty = json!({});
    let mut matmul = ops::build(
        "matmul",
        &empty,
        &[Operand::batched(&[inf]), Operand::fixed(&[inf, units])],
    )
    .unwrap();
    let mut add = ops::build("add", &empty, &[h.clone(), Operand::fixed(&[units])]).unwrap();
    let mut relu = ops::build("relu", &empty, std::slice::from_ref(&h)).unwrap();
    let (mut z, mut a, mut y) = (
        vec![0.0; rows * units],
        vec![0.0; rows * units],
        vec![0.0; rows * units],
    );
    let dy = vec![0.5f32; rows * units];
    let (mut da, mut dz, mut db, mut dw) = (
        vec![0.0; rows * units],
        vec![0.0; rows * units],
        vec![0.0; units],
        vec![0.0; inf * units],
    );
    time("plain loop relu (reference)", 20000, || {
        for (v, &u) in y.iter_mut().zip(&z) {
            *v = if u < 0.0 { 0.0 } else { u };
        }
        std::hint::black_box(&mut y);
    });
    time("matmul forward", 2000, || {
        matmul.forward(&[&x, &w], &mut z, rows)
    });
    time("add forward", 20000, || {
        add.forward(&[&z, &b], &mut a, rows)
    });
    time("relu forward", 20000, || relu.forward(&[&a], &mut y, rows));
    time("relu backward", 20000, || {
        relu.backward(&[&a], &y, &dy, &mut [Some(&mut da)], rows)
    });
    time("add backward", 20000, || {
        add.backward(
            &[&z, &b],
            &a,
            &da,
            &mut [Some(&mut dz), Some(&mut db)],
            rows,
        )
    });
    time("matmul backward (dw)", 2000, || {
        matmul.backward(&[&x, &w], &z, &dz, &mut [None, Some(&mut dw)], rows)
    });
    let spec = json!({"class_name": "Dense", "config": {"units": units, "activation": "relu"}});
    let mut dense = layers::build(&spec, &[inf], Key::new(0)).unwrap();
    let ctx = Ctx {
        training: true,
        key: Key::new(0),
        mask: None,
    };
    time("Dense(relu) forward", 2000, || {
        dense.forward(&x, &mut y, rows, &ctx)
    });
    let mut dyv = dy.clone();
    time("Dense(relu) backward", 2000, || {
        dense.backward(&x, &y, &mut dyv, None, rows)
    });
}
