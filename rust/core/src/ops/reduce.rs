//! Reductions over axes: sum, mean, max, min, prod, var, std, logsumexp, and
//! argmax / argmin.
//!
//! Each result element gathers the values it reduces (a strided walk over the
//! reduced axes from its own base offset) and reduces them serially in f64, in
//! row-major order, so the bits never depend on threads or on how the batch is
//! split. The backward walks the same elements and overwrites every input
//! gradient once (each input element feeds exactly one result element).

use super::strided::{strides_of, zeroed, Walk};
use super::{attr, attr_bool, expect_inputs, resolve_axis, Op, Operand, MAX_RANK};
use crate::error::Result;
use serde_json::Value;

pub(super) fn build(name: &str, attrs: &Value, inputs: &[Operand]) -> Option<Result<Box<dyn Op>>> {
    let kind = match name {
        "sum" => R::Sum,
        "mean" => R::Mean,
        "max" => R::Max,
        "min" => R::Min,
        "prod" => R::Prod,
        "var" => R::Var,
        "std" => R::Std,
        "logsumexp" => R::LogSumExp,
        "argmax" => R::ArgMax,
        "argmin" => R::ArgMin,
        _ => return None,
    };
    Some(Reduce::build(name, kind, attrs, inputs).map(|op| Box::new(op) as Box<dyn Op>))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum R {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    Var,
    Std,
    LogSumExp,
    ArgMax,
    ArgMin,
}

/// The axes `attrs["axis"]` names (null: all of them), resolved and checked.
fn reduced_axes(attrs: &Value, rank: usize, single: bool) -> Result<[bool; MAX_RANK]> {
    let mut mask = [false; MAX_RANK];
    let given: Vec<i64> = match attr(attrs, "axis") {
        Value::Null => {
            mask[..rank].fill(true);
            return Ok(mask);
        }
        v => match (super::as_int(v), super::as_ints(v)) {
            (Some(a), _) => vec![a],
            (None, Some(list)) if !single => list,
            _ => {
                let what = if single {
                    "null or an integer"
                } else {
                    "null, an integer or a list of integers"
                };
                crate::bail!("'axis' must be {what}, got {v}");
            }
        },
    };
    for a in given {
        let ax = resolve_axis(a, rank)?;
        if mask[ax] {
            crate::bail!("axis {a} is repeated");
        }
        mask[ax] = true;
    }
    Ok(mask)
}

struct Reduce {
    kind: R,
    input: Operand,
    /// Which full axes are reduced.
    mask: [bool; MAX_RANK],
    out: Operand,
    vals: Vec<f32>,
    grads: Vec<f32>,
    prefix: Vec<f64>,
    acc: Vec<f64>,
}

impl Reduce {
    fn build(name: &str, kind: R, attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs(name, inputs, 1)?;
        let input = inputs[0].clone();
        let rank = input.rank();
        let arg = matches!(kind, R::ArgMax | R::ArgMin);
        let mask = reduced_axes(attrs, rank, arg)?;
        let keepdims = attr_bool(attrs, "keepdims", false)?;
        // The full output shape, axis 0 a placeholder when the batch axis stays.
        let full = input.dims(1);
        let mut shape = Vec::with_capacity(rank);
        for (ax, &d) in full.as_slice().iter().enumerate() {
            if !mask[ax] {
                shape.push(d);
            } else if keepdims {
                shape.push(1);
            }
        }
        let out = if input.batched && !mask[0] {
            Operand::batched(&shape[1..])
        } else {
            Operand::fixed(&shape)
        };
        Ok(Reduce {
            kind,
            input,
            mask,
            out,
            vals: Vec::new(),
            grads: Vec::new(),
            prefix: Vec::new(),
            acc: Vec::new(),
        })
    }

    /// (reduced, kept) sizes when every reduced axis comes before every kept
    /// one (a mean over the batch, a sum of everything): the input is then
    /// rows of the kept elements, reduced row by row with contiguous reads, in
    /// the same order per result element as the general path.
    fn leading(&self, rows: usize) -> Option<(usize, usize)> {
        let d = self.input.dims(rows);
        let (mut r, mut k, mut kept_seen) = (1, 1, false);
        for ax in 0..d.rank() {
            if d[ax] == 1 {
                continue;
            }
            if !self.mask[ax] {
                kept_seen = true;
                k *= d[ax];
            } else if kept_seen {
                return None;
            } else {
                r *= d[ax];
            }
        }
        Some((r, k))
    }

    /// The leading-axes path of `forward` for sum, mean, max and min.
    fn forward_leading(&mut self, x: &[f32], y: &mut [f32], (r, k): (usize, usize)) {
        if k <= 1 {
            // One result (or none): the whole input in order.
            if k == 1 {
                y[0] = reduce(self.kind, x);
            }
            return;
        }
        let rows = x.chunks_exact(k);
        match self.kind {
            R::Sum | R::Mean => {
                let acc = zeroed(&mut self.acc, k);
                for row in rows {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v as f64;
                    }
                }
                let mean = self.kind == R::Mean;
                for (o, &a) in y.iter_mut().zip(acc.iter()) {
                    *o = if mean {
                        (a / r as f64) as f32
                    } else {
                        a as f32
                    };
                }
            }
            _ => {
                let max = self.kind == R::Max;
                y.fill(if max {
                    f32::NEG_INFINITY
                } else {
                    f32::INFINITY
                });
                for row in rows {
                    for (o, &v) in y.iter_mut().zip(row) {
                        if !o.is_nan() && (v.is_nan() || (max && v > *o) || (!max && v < *o)) {
                            *o = v;
                        }
                    }
                }
            }
        }
    }

    /// Walks over the result's elements and over one element's reduced values,
    /// both giving offsets into the input.
    fn walks(&self, rows: usize) -> (Walk<1>, Walk<1>) {
        let d = self.input.dims(rows);
        let s = strides_of(&d);
        let (mut kd, mut ks, mut rd, mut rs) =
            ([0; MAX_RANK], [0; MAX_RANK], [0; MAX_RANK], [0; MAX_RANK]);
        let (mut nk, mut nr) = (0, 0);
        for ax in 0..d.rank() {
            if self.mask[ax] {
                (rd[nr], rs[nr]) = (d[ax], s[ax]);
                nr += 1;
            } else {
                (kd[nk], ks[nk]) = (d[ax], s[ax]);
                nk += 1;
            }
        }
        (
            Walk::new(&kd[..nk], [&ks[..nk]]),
            Walk::new(&rd[..nr], [&rs[..nr]]),
        )
    }
}

/// Calls `f(j, base)` for every result element j with its input base offset.
fn for_each_output(kept: &Walk<1>, mut f: impl FnMut(usize, usize)) {
    let [s] = kept.inner_strides();
    let mut j = 0;
    kept.runs(0, kept.len(), |[o], n| {
        for i in 0..n {
            f(j, o + i * s);
            j += 1;
        }
    });
}

/// vals ← the values a result element reduces, in row-major order.
fn gather_at(red: &Walk<1>, base: usize, x: &[f32], vals: &mut Vec<f32>) {
    let [s] = red.inner_strides();
    vals.clear();
    red.runs(0, red.len(), |[o], n| {
        let o = base + o;
        if s == 1 {
            vals.extend_from_slice(&x[o..o + n]);
        } else {
            vals.extend((0..n).map(|i| x[o + i * s]));
        }
    });
}

/// dx at a result element's reduced positions ← g, in gather order.
fn scatter_at(red: &Walk<1>, base: usize, g: &[f32], dx: &mut [f32]) {
    let [s] = red.inner_strides();
    let mut p = 0;
    red.runs(0, red.len(), |[o], n| {
        let o = base + o;
        for (i, &v) in g[p..p + n].iter().enumerate() {
            dx[o + i * s] = v;
        }
        p += n;
    });
}

/// The sum in f64, added in order from +0 (as the row-by-row path adds).
fn sum(v: &[f32]) -> f64 {
    v.iter().fold(0.0, |a, &x| a + x as f64)
}

fn mean(v: &[f32]) -> f64 {
    sum(v) / v.len() as f64
}

fn variance(v: &[f32], m: f64) -> f64 {
    v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64
}

/// The index of the largest (`max`) or smallest value; the first NaN wins, then
/// the first of equal values, as in NumPy.
fn arg_extreme(v: &[f32], max: bool) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate().skip(1) {
        let b = v[best];
        if b.is_nan() {
            break;
        }
        if x.is_nan() || (max && x > b) || (!max && x < b) {
            best = i;
        }
    }
    best
}

/// max (or min) with NaN propagating; -inf (inf) when empty.
fn extreme(v: &[f32], max: bool) -> f32 {
    let mut m = if max {
        f32::NEG_INFINITY
    } else {
        f32::INFINITY
    };
    for &x in v {
        if x.is_nan() {
            return x;
        }
        if (max && x > m) || (!max && x < m) {
            m = x;
        }
    }
    m
}

fn reduce(kind: R, v: &[f32]) -> f32 {
    match kind {
        R::Sum => sum(v) as f32,
        R::Mean => mean(v) as f32,
        R::Max => extreme(v, true),
        R::Min => extreme(v, false),
        R::Prod => v.iter().map(|&x| x as f64).product::<f64>() as f32,
        R::Var => variance(v, mean(v)) as f32,
        R::Std => variance(v, mean(v)).sqrt() as f32,
        R::LogSumExp => {
            let m = extreme(v, true);
            if !m.is_finite() {
                return m;
            }
            let s: f64 = v.iter().map(|&x| ((x - m) as f64).exp()).sum();
            (m as f64 + s.ln()) as f32
        }
        R::ArgMax => arg_extreme(v, true) as f32,
        R::ArgMin => arg_extreme(v, false) as f32,
    }
}

impl Op for Reduce {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        if matches!(self.kind, R::Sum | R::Mean | R::Max | R::Min) {
            if let Some(split) = self.leading(rows) {
                self.forward_leading(xs[0], y, split);
                return;
            }
        }
        let (kept, red) = self.walks(rows);
        let (x, kind, vals) = (xs[0], self.kind, &mut self.vals);
        for_each_output(&kept, |j, base| {
            gather_at(&red, base, x, vals);
            y[j] = reduce(kind, vals);
        });
    }

    fn backward(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let Some(dx) = dxs[0].as_deref_mut() else {
            return;
        };
        if matches!(self.kind, R::ArgMax | R::ArgMin) {
            dx.fill(0.0);
            return;
        }
        let (kept, red) = self.walks(rows);
        let (x, kind) = (xs[0], self.kind);
        let n = red.len();
        let simple = matches!(kind, R::Sum | R::Mean);
        if let (true, Some((_, k))) = (simple, self.leading(rows)) {
            // Every row of dx is dy (over n for a mean).
            if k > 0 {
                for row in dx.chunks_exact_mut(k) {
                    for (d, &g) in row.iter_mut().zip(dy) {
                        *d = if kind == R::Mean { g / n as f32 } else { g };
                    }
                }
            }
            return;
        }
        let (vals, g, prefix) = (&mut self.vals, &mut self.grads, &mut self.prefix);
        for_each_output(&kept, |j, base| {
            if !simple {
                gather_at(&red, base, x, vals);
            }
            let (d, r) = (dy[j], y[j]);
            g.clear();
            match kind {
                R::Sum => g.resize(n, d),
                R::Mean => g.resize(n, d / n as f32),
                R::Max | R::Min => {
                    let ties = vals.iter().filter(|&&v| v == r).count();
                    let share = d / ties.max(1) as f32;
                    g.extend(vals.iter().map(|&v| if v == r { share } else { 0.0 }));
                }
                R::Prod => {
                    // The product of the others, from prefix and suffix products:
                    // exact with zeros, unlike y / x.
                    prefix.clear();
                    let mut p = 1.0f64;
                    for &v in vals.iter() {
                        prefix.push(p);
                        p *= v as f64;
                    }
                    g.resize(n, 0.0);
                    let mut suffix = 1.0f64;
                    for i in (0..n).rev() {
                        g[i] = (d as f64 * prefix[i] * suffix) as f32;
                        suffix *= vals[i] as f64;
                    }
                }
                R::Var | R::Std => {
                    let m = mean(vals);
                    let scale = if kind == R::Var {
                        2.0 * d as f64 / n as f64
                    } else if r > 0.0 {
                        d as f64 / (n as f64 * r as f64)
                    } else {
                        0.0 // std'(x) is undefined where every value is equal
                    };
                    g.extend(vals.iter().map(|&v| ((v as f64 - m) * scale) as f32));
                }
                R::LogSumExp => {
                    if r.is_finite() {
                        g.extend(vals.iter().map(|&v| d * (v - r).exp()));
                    } else {
                        g.resize(n, 0.0);
                    }
                }
                R::ArgMax | R::ArgMin => unreachable!("handled above"),
            }
            scatter_at(&red, base, g, dx);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    const X: [f32; 6] = [1.0, -2.0, 3.0, 4.0, 0.5, -6.0];

    fn red(name: &str, attrs: Value) -> (Vec<f32>, Operand) {
        let op = make(name, &attrs, &[Operand::fixed(&[2, 3])]);
        let out = op.output().clone();
        (eval(name, &attrs, &[Operand::fixed(&[2, 3])], &[&X]), out)
    }

    #[test]
    fn reductions_over_axes() {
        let (y, out) = red("sum", json!({}));
        assert_eq!((y, out), (vec![0.5], Operand::fixed(&[])));
        let (y, out) = red("sum", json!({"axis": 0, "keepdims": true}));
        assert_eq!((y, out), (vec![5.0, -1.5, -3.0], Operand::fixed(&[1, 3])));
        let (y, out) = red("mean", json!({"axis": -1}));
        assert_eq!((y, out), (vec![2.0 / 3.0, -0.5], Operand::fixed(&[2])));
        assert_eq!(red("max", json!({"axis": 1})).0, [3.0, 4.0]);
        assert_eq!(red("max", json!({"axis": 0})).0, [4.0, 0.5, 3.0]);
        assert_eq!(red("min", json!({"axis": 0})).0, [1.0, -2.0, -6.0]);
        let nan = eval(
            "min",
            &json!({"axis": 0}),
            &[Operand::fixed(&[3, 2])],
            &[&[1.0, 0.0, f32::NAN, 2.0, -1.0, f32::NAN]],
        );
        assert!(nan[0].is_nan() && nan[1].is_nan());
        assert_eq!(red("min", json!({"axis": [0, 1]})).0, [-6.0]);
        assert_eq!(red("prod", json!({"axis": 0})).0, [4.0, -1.0, -18.0]);
        assert_eq!(red("argmax", json!({"axis": 1})).0, [2.0, 0.0]);
        assert_eq!(red("argmin", json!({})).0, [5.0]);
        let (y, out) = red("argmax", json!({"keepdims": true}));
        assert_eq!((y, out), (vec![3.0], Operand::fixed(&[1, 1])));
        let var = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64
        };
        let v0 = var(&[1.0, -2.0, 3.0]) as f32;
        let v1 = var(&[4.0, 0.5, -6.0]) as f32;
        assert_close(&red("var", json!({"axis": 1})).0, &[v0, v1], 1e-6, "var");
        assert_close(
            &red("std", json!({"axis": 1})).0,
            &[v0.sqrt(), v1.sqrt()],
            1e-6,
            "std",
        );
        let lse = |v: &[f32]| v.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln() as f32;
        assert_close(
            &red("logsumexp", json!({"axis": 1})).0,
            &[lse(&X[..3]), lse(&X[3..])],
            1e-6,
            "logsumexp",
        );
        // Stable far from zero; all -inf gives -inf.
        let big = eval(
            "logsumexp",
            &json!({}),
            &[Operand::fixed(&[2])],
            &[&[1000.0, 1000.0]],
        );
        assert_close(&big, &[1000.0 + 2f32.ln()], 1e-6, "big logsumexp");
        let ninf = eval(
            "logsumexp",
            &json!({}),
            &[Operand::fixed(&[2])],
            &[&[f32::NEG_INFINITY; 2]],
        );
        assert_eq!(ninf, [f32::NEG_INFINITY]);
        let nan = eval(
            "max",
            &json!({}),
            &[Operand::fixed(&[3])],
            &[&[1.0, f32::NAN, 2.0]],
        );
        assert!(nan[0].is_nan());
    }

    #[test]
    fn reduction_gradients() {
        let ops = [Operand::fixed(&[3, 2, 4])];
        let x = random(24, 5, 1.5);
        for name in [
            "sum",
            "mean",
            "max",
            "min",
            "prod",
            "var",
            "std",
            "logsumexp",
        ] {
            for attrs in [
                json!({}),
                json!({"axis": 1}),
                json!({"axis": [0, 2], "keepdims": true}),
                json!({"axis": -1}),
                json!({"axis": [0, 1]}),
            ] {
                check_grad(name, &attrs, &ops, std::slice::from_ref(&x), 0);
            }
        }
        let g = grads("argmax", &json!({"axis": 0}), &ops, &[&x], 0);
        assert!(g[0].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn ties_share_and_zeros_multiply_exactly() {
        let ops = [Operand::fixed(&[4])];
        let g = grads("max", &json!({}), &ops, &[&[3.0, 1.0, 3.0, 2.0]], 0);
        let d = random(1, 1, 1.0)[0];
        assert_eq!(g[0], [d / 2.0, 0.0, d / 2.0, 0.0]);
        let g = grads("prod", &json!({}), &ops, &[&[2.0, 0.0, 3.0, 5.0]], 0);
        assert_eq!(g[0], [0.0, (d as f64 * 30.0) as f32, 0.0, 0.0]);
        let g = grads("prod", &json!({}), &ops, &[&[2.0, 0.0, 3.0, 0.0]], 0);
        assert_eq!(g[0], [0.0; 4]);
    }

    #[test]
    fn batch_axis_reductions() {
        let x = Operand::batched(&[3, 4]);
        let op = make("sum", &json!({"axis": 0}), std::slice::from_ref(&x));
        assert_eq!(op.output(), &Operand::fixed(&[3, 4]));
        let op = make("mean", &json!({"axis": [1, 2]}), std::slice::from_ref(&x));
        assert_eq!(op.output(), &Operand::batched(&[]));
        let op = make("max", &json!({"keepdims": true}), std::slice::from_ref(&x));
        assert_eq!(op.output(), &Operand::fixed(&[1, 1, 1]));
        for name in ["sum", "mean", "max", "prod", "std", "logsumexp", "argmax"] {
            for attrs in [
                json!({}),
                json!({"axis": 0}),
                json!({"axis": 2, "keepdims": true}),
            ] {
                check_batched(name, &attrs, std::slice::from_ref(&x), 5);
            }
        }
        let err = build_err_with("sum", &json!({"axis": 3}), std::slice::from_ref(&x));
        assert!(err.contains("axis 3 is out of range for rank 3"), "{err}");
        assert!(
            err.starts_with("sum on inputs of shape (None, 3, 4)"),
            "{err}"
        );
        let err = build_err_with("mean", &json!({"axis": [1, -2]}), std::slice::from_ref(&x));
        assert!(err.contains("repeated"), "{err}");
        let err = build_err_with("argmax", &json!({"axis": [1]}), &[x]);
        assert!(err.contains("'axis' must be null or an integer"), "{err}");
    }
}
