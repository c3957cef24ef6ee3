//! Neural-network ops: softmax and log_softmax along an axis (max-subtracted,
//! sums in f64), and one_hot.

use super::{attr_int, expect_inputs, resolve_axis, Op, Operand};
use crate::error::Result;
use crate::parallel::for_each_row;
use serde_json::Value;

pub(super) fn build(name: &str, attrs: &Value, inputs: &[Operand]) -> Option<Result<Box<dyn Op>>> {
    let op = match name {
        "softmax" => {
            Softmax::build(name, false, attrs, inputs).map(|op| Box::new(op) as Box<dyn Op>)
        }
        "log_softmax" => {
            Softmax::build(name, true, attrs, inputs).map(|op| Box::new(op) as Box<dyn Op>)
        }
        "one_hot" => OneHot::build(attrs, inputs).map(|op| Box::new(op) as Box<dyn Op>),
        _ => return None,
    };
    Some(op)
}

struct Softmax {
    log: bool,
    axis: usize,
    out: Operand,
    /// One strided row gathered, and its result, when the axis is not the last.
    row: Vec<f32>,
    row_out: Vec<f32>,
}

/// softmax (or log_softmax) of one contiguous row.
fn softmax_row(log: bool, x: &[f32], y: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if log {
        let s: f64 = x.iter().map(|&v| ((v - m) as f64).exp()).sum();
        let ls = s.ln();
        for (o, &v) in y.iter_mut().zip(x) {
            *o = ((v - m) as f64 - ls) as f32;
        }
    } else {
        let mut s = 0.0f64;
        for (o, &v) in y.iter_mut().zip(x) {
            *o = (v - m).exp();
            s += *o as f64;
        }
        for o in y.iter_mut() {
            *o = (*o as f64 / s) as f32;
        }
    }
}

/// The gradient of one row: softmax dx = y·(dy − Σ dy·y); log_softmax
/// dx = dy − exp(y)·Σ dy.
fn softmax_row_grad(log: bool, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    if log {
        let s: f64 = dy.iter().map(|&g| g as f64).sum();
        for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
            *d = (g as f64 - (v as f64).exp() * s) as f32;
        }
    } else {
        let dot: f64 = dy.iter().zip(y).map(|(&g, &v)| g as f64 * v as f64).sum();
        for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
            *d = (v as f64 * (g as f64 - dot)) as f32;
        }
    }
}

impl Softmax {
    fn build(name: &str, log: bool, attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs(name, inputs, 1)?;
        let x = &inputs[0];
        let axis = resolve_axis(attr_int(attrs, "axis")?.unwrap_or(-1), x.rank())?;
        Ok(Softmax {
            log,
            axis,
            out: x.clone(),
            row: Vec::new(),
            row_out: Vec::new(),
        })
    }

    /// (blocks before the axis, its size, elements after it).
    fn split(&self, rows: usize) -> (usize, usize, usize) {
        let d = self.out.dims(rows);
        let s = d.as_slice();
        (
            s[..self.axis].iter().product(),
            s[self.axis],
            s[self.axis + 1..].iter().product(),
        )
    }
}

/// Calls `f(row_in..., row_out)` on every strided row (stride `inner`) of a
/// (outer, n, inner) layout, through scratch rows.
fn strided_rows(
    (outer, n, inner): (usize, usize, usize),
    ins: [&[f32]; 2],
    out: &mut [f32],
    scratch: (&mut Vec<f32>, &mut Vec<f32>),
    mut f: impl FnMut(&[f32], &[f32], &mut [f32]),
) {
    let (a, b) = scratch;
    a.resize(n, 0.0);
    b.resize(2 * n, 0.0);
    let (r1, r2) = b.split_at_mut(n);
    for o in 0..outer {
        for i in 0..inner {
            let base = o * n * inner + i;
            for j in 0..n {
                r1[j] = ins[0][base + j * inner];
                r2[j] = ins[1][base + j * inner];
            }
            f(r1, r2, a);
            for j in 0..n {
                out[base + j * inner] = a[j];
            }
        }
    }
}

impl Op for Softmax {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        let (outer, n, inner) = self.split(rows);
        let (x, log) = (xs[0], self.log);
        if n == 0 {
            return;
        }
        if inner == 1 {
            for_each_row(y, n, |r, row| softmax_row(log, &x[r * n..(r + 1) * n], row));
            return;
        }
        let scratch = (&mut self.row_out, &mut self.row);
        strided_rows((outer, n, inner), [x, x], y, scratch, |r, _, o| {
            softmax_row(log, r, o)
        });
    }

    fn backward(
        &mut self,
        _xs: &[&[f32]],
        y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let Some(dx) = dxs[0].as_deref_mut() else {
            return;
        };
        let (outer, n, inner) = self.split(rows);
        let log = self.log;
        if n == 0 {
            return;
        }
        if inner == 1 {
            for_each_row(dx, n, |r, row| {
                let span = r * n..(r + 1) * n;
                softmax_row_grad(log, &y[span.clone()], &dy[span], row)
            });
            return;
        }
        let scratch = (&mut self.row_out, &mut self.row);
        strided_rows((outer, n, inner), [y, dy], dx, scratch, |yr, dr, o| {
            softmax_row_grad(log, yr, dr, o)
        });
    }
}

/// one_hot: float class ids to rows of 0/1, out-of-range ids to zero rows.
struct OneHot {
    classes: usize,
    out: Operand,
}

impl OneHot {
    fn build(attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs("one_hot", inputs, 1)?;
        let classes = match attr_int(attrs, "num_classes")? {
            Some(c) if c >= 0 => c as usize,
            _ => crate::bail!("needs 'num_classes', an integer >= 0"),
        };
        let mut out = inputs[0].clone();
        out.shape.push(classes);
        Ok(OneHot { classes, out })
    }
}

impl Op for OneHot {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], _rows: usize) {
        y.fill(0.0);
        let c = self.classes;
        for (i, &id) in xs[0].iter().enumerate() {
            // Ids are truncated toward zero, as a cast to int would.
            if id > -1.0 && id < c as f32 {
                y[i * c + id as usize] = 1.0;
            }
        }
    }

    fn backward(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        _dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        _rows: usize,
    ) {
        if let Some(dx) = dxs[0].as_deref_mut() {
            dx.fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn softmax_values_and_stability() {
        let ops = [Operand::fixed(&[2, 3])];
        let x = [1.0f32, 2.0, 3.0, 1000.0, 1000.0, 1000.0];
        let y = eval("softmax", &json!({}), &ops, &[&x]);
        let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
        let s: f64 = e.iter().sum();
        let want = [
            e[0] / s,
            e[1] / s,
            e[2] / s,
            1.0 / 3.0,
            1.0 / 3.0,
            1.0 / 3.0,
        ]
        .map(|v| v as f32);
        assert_close(&y, &want, 1e-6, "softmax");
        let y = eval("log_softmax", &json!({}), &ops, &[&x]);
        let want = want.map(|v| v.ln());
        assert_close(&y, &want, 1e-5, "log_softmax");
        // Along axis 0: columns.
        let y = eval(
            "softmax",
            &json!({"axis": 0}),
            &ops,
            &[&[0.0, 1.0, 2.0, 0.0, 1.0, 2.0]],
        );
        assert_close(&y, &[0.5; 6], 1e-6, "softmax axis 0");
    }

    #[test]
    fn softmax_gradients_and_batching() {
        let ops = [Operand::fixed(&[2, 3, 4])];
        let x = random(24, 2, 2.0);
        for name in ["softmax", "log_softmax"] {
            for axis in [-1, 1, 0] {
                check_grad(
                    name,
                    &json!({ "axis": axis }),
                    &ops,
                    std::slice::from_ref(&x),
                    0,
                );
                check_batched(
                    name,
                    &json!({ "axis": axis }),
                    &[Operand::batched(&[3, 4])],
                    3,
                );
            }
        }
        let err = build_err_with("softmax", &json!({"axis": 2}), &[Operand::batched(&[3])]);
        assert!(err.contains("axis 2 is out of range for rank 2"), "{err}");
    }

    #[test]
    fn one_hot_rows() {
        let ops = [Operand::batched(&[])];
        let op = make("one_hot", &json!({"num_classes": 3}), &ops);
        assert_eq!(op.output(), &Operand::batched(&[3]));
        let mut op = op;
        let mut y = vec![9.0; 12];
        op.forward(&[&[2.0, 0.0, 3.0, -1.0]], &mut y, 4);
        assert_eq!(
            y,
            [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        let g = grads(
            "one_hot",
            &json!({"num_classes": 3}),
            &ops,
            &[&[1.0, 2.0]],
            2,
        );
        assert_eq!(g[0], [0.0, 0.0]);
        let err = build_err("one_hot", &ops);
        assert!(err.contains("num_classes"), "{err}");
    }
}
