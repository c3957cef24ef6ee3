//! Test helpers shared by the op families: run an op, check its gradient
//! against central differences, check batched against fixed operands.

use super::{build, Op, Operand};
use crate::rng::Key;
use serde_json::{json, Value};

/// `n` uniform numbers in [-scale, scale).
pub fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let k = Key::new(seed);
    (0..n)
        .map(|i| (2.0 * k.uniform_f32(i as u64) - 1.0) * scale)
        .collect()
}

pub fn make(name: &str, attrs: &Value, ops: &[Operand]) -> Box<dyn Op> {
    match build(name, attrs, ops) {
        Ok(op) => op,
        Err(e) => panic!("{name} {attrs}: {e}"),
    }
}

fn forward(op: &mut dyn Op, xs: &[&[f32]], rows: usize) -> Vec<f32> {
    let mut y = vec![f32::NAN; op.output().len(rows)];
    op.forward(xs, &mut y, rows);
    y
}

/// The result of `name` on `xs` (all operands fixed, or batched at 1 row).
pub fn eval(name: &str, attrs: &Value, ops: &[Operand], xs: &[&[f32]]) -> Vec<f32> {
    forward(make(name, attrs, ops).as_mut(), xs, 1)
}

fn backward(
    op: &mut dyn Op,
    ops: &[Operand],
    xs: &[&[f32]],
    dy: &[f32],
    rows: usize,
) -> Vec<Vec<f32>> {
    let y = forward(op, xs, rows);
    let mut dxs: Vec<Vec<f32>> = ops.iter().map(|o| vec![f32::NAN; o.len(rows)]).collect();
    let mut refs: Vec<Option<&mut [f32]>> = dxs.iter_mut().map(|d| Some(&mut d[..])).collect();
    op.backward(xs, &y, dy, &mut refs, rows);
    dxs
}

/// Every input's gradient for the result gradient `random(len, 1, 1.0)`.
pub fn grads(
    name: &str,
    attrs: &Value,
    ops: &[Operand],
    xs: &[&[f32]],
    rows: usize,
) -> Vec<Vec<f32>> {
    let mut op = make(name, attrs, ops);
    let dy = random(op.output().len(rows), 1, 1.0);
    backward(op.as_mut(), ops, xs, &dy, rows)
}

/// Compares the backward with central differences of Σ dy·forward (in f64).
pub fn check_grad(name: &str, attrs: &Value, ops: &[Operand], xs: &[Vec<f32>], rows: usize) {
    let mut op = make(name, attrs, ops);
    let dy = random(op.output().len(rows), 1, 1.0);
    let refs: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
    let analytic = backward(op.as_mut(), ops, &refs, &dy, rows);
    let loss = |op: &mut dyn Op, xs: &[Vec<f32>]| -> f64 {
        let refs: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
        let y = forward(op, &refs, rows);
        y.iter().zip(&dy).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let mut work = xs.to_vec();
    for k in 0..xs.len() {
        for i in 0..xs[k].len() {
            let x0 = xs[k][i];
            let h = 1e-3 * x0.abs().max(1.0);
            work[k][i] = x0 + h;
            let up = loss(op.as_mut(), &work);
            work[k][i] = x0 - h;
            let down = loss(op.as_mut(), &work);
            work[k][i] = x0;
            let numeric = (up - down) / (2.0 * h as f64);
            let got = analytic[k][i] as f64;
            let tol = 1e-2 * numeric.abs().max(got.abs()) + 2e-3;
            assert!(
                (numeric - got).abs() <= tol,
                "{name} {attrs}: d/dx{k}[{i}] = {got}, central difference {numeric}"
            );
        }
    }
}

/// Batched operands at `rows` give bitwise the results and gradients of fixed
/// operands of the same full shapes.
pub fn check_batched(name: &str, attrs: &Value, ops: &[Operand], rows: usize) {
    let fixed: Vec<Operand> = ops
        .iter()
        .map(|o| Operand::fixed(o.dims(rows).as_slice()))
        .collect();
    let xs: Vec<Vec<f32>> = ops
        .iter()
        .enumerate()
        .map(|(k, o)| random(o.len(rows), 10 + k as u64, 2.0))
        .collect();
    let refs: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
    let mut a = make(name, attrs, ops);
    let mut b = make(name, attrs, &fixed);
    assert_eq!(
        a.output().dims(rows),
        b.output().dims(rows),
        "{name}: output shapes"
    );
    let ya = forward(a.as_mut(), &refs, rows);
    let yb = forward(b.as_mut(), &refs, rows);
    assert_eq!(bits(&ya), bits(&yb), "{name} {attrs}: forward");
    let dy = random(ya.len(), 3, 1.0);
    let ga = backward(a.as_mut(), ops, &refs, &dy, rows);
    let gb = backward(b.as_mut(), &fixed, &refs, &dy, rows);
    for (k, (p, q)) in ga.iter().zip(&gb).enumerate() {
        assert_eq!(bits(p), bits(q), "{name} {attrs}: gradient {k}");
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The error building `name` with no attributes.
pub fn build_err(name: &str, ops: &[Operand]) -> String {
    build_err_with(name, &json!({}), ops)
}

pub fn build_err_with(name: &str, attrs: &Value, ops: &[Operand]) -> String {
    match build(name, attrs, ops) {
        Ok(_) => panic!("{name} {attrs} built for {ops:?}"),
        Err(e) => e.0,
    }
}

pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}
