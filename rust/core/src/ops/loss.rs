//! The `loss` op: a built-in loss (`crate::loss::Loss`) reduced over the batch as
//! Keras's default "sum_over_batch_size" does, Σᵢ wᵢ·lossᵢ / rows. It is what a
//! loss object called on tensors runs, so a custom loop's loss and its gradient
//! are the fused loop's own numbers (a softmax never fused into it: the loop
//! sees the model's output as it is).
//!
//! Inputs: `y_true` (rows × true width: class ids for a sparse loss), `y_pred`
//! (rows × width; a rank-1 prediction is one column) and optionally the samples'
//! weights (rows). All batched or none; the result is one number.

use super::{expect_inputs, Op, Operand};
use crate::error::Result;
use crate::loss::Loss;
use serde_json::Value;

pub(super) fn build(name: &str, attrs: &Value, inputs: &[Operand]) -> Option<Result<Box<dyn Op>>> {
    (name == "loss").then(|| LossOp::build(attrs, inputs).map(|op| Box::new(op) as Box<dyn Op>))
}

struct LossOp {
    loss: Loss,
    true_width: usize,
    width: usize,
    weighted: bool,
    out: Operand,
}

/// Rows (the leading axis, or the batch when batched) and the elements per row.
fn rows_and_width(x: &Operand) -> (Option<usize>, usize) {
    if x.batched {
        (None, x.size())
    } else {
        let rows = x.shape.first().copied().unwrap_or(1);
        (Some(rows), x.shape.iter().skip(1).product())
    }
}

impl LossOp {
    fn build(attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        if inputs.len() != 3 {
            expect_inputs("loss", inputs, 2)?;
        }
        let loss = Loss::from_spec(attrs.get("loss").unwrap_or(&Value::Null))?;
        if loss == Loss::Traced {
            crate::bail!("a traced loss has no kernel of its own");
        }
        if inputs.iter().any(|x| x.batched != inputs[0].batched) {
            crate::bail!("y_true, y_pred and sample_weight must all be batched or none");
        }
        if !inputs[0].batched && inputs.iter().any(|x| x.shape.is_empty()) {
            crate::bail!("y_true and y_pred need a batch axis");
        }
        let (rows, width) = rows_and_width(&inputs[1]);
        let (true_rows, true_width) = rows_and_width(&inputs[0]);
        if true_rows != rows {
            crate::bail!("y_true and y_pred hold different numbers of samples");
        }
        let want = if loss.is_sparse() { 1 } else { width };
        if true_width != want {
            crate::bail!(
                "y_true has {true_width} value(s) per sample where the loss reads {want} \
                 ({})",
                if loss.is_sparse() {
                    "one class id"
                } else {
                    "one per prediction"
                }
            );
        }
        let weighted = inputs.len() == 3;
        if weighted {
            let (w_rows, w_width) = rows_and_width(&inputs[2]);
            if w_rows != rows || w_width != 1 {
                crate::bail!("sample_weight must hold one weight per sample");
            }
        }
        Ok(LossOp {
            loss,
            true_width,
            width,
            weighted,
            out: Operand::fixed(&[]),
        })
    }

    /// Σᵢ wᵢ·lossᵢ / rows, and its gradient with respect to y_pred into `grad`.
    fn run(&self, xs: &[&[f32]], grad: Option<&mut [f32]>) -> f64 {
        let rows = xs[1].len().checked_div(self.width).unwrap_or(0);
        let weights = self.weighted.then(|| xs[2]);
        let norm = rows.max(1) as f32;
        let total = self.loss.evaluate(
            xs[0],
            self.true_width,
            xs[1],
            self.width,
            weights,
            norm,
            grad,
            false,
        );
        total / f64::from(norm)
    }
}

impl Op for LossOp {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], _rows: usize) {
        y[0] = self.run(xs, None) as f32;
    }

    fn backward(
        &mut self,
        xs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        _rows: usize,
    ) {
        // The targets and the weights are data: no gradient.
        for k in [0, 2] {
            if let Some(dx) = dxs.get_mut(k).and_then(|d| d.as_deref_mut()) {
                dx.fill(0.0);
            }
        }
        if let Some(dp) = dxs[1].as_deref_mut() {
            self.run(xs, Some(dp));
            // (a seed of 1, as a custom loop's, leaves the fused loop's numbers)
            if dy[0] != 1.0 {
                dp.iter_mut().for_each(|g| *g *= dy[0]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn mean_squared_error_weighted_value_and_gradient() {
        let ops = [
            Operand::fixed(&[2, 2]),
            Operand::fixed(&[2, 2]),
            Operand::fixed(&[2]),
        ];
        let t = [0.0f32, 1.0, 2.0, 3.0];
        let p = [1.0f32, 1.0, 2.0, 5.0];
        let w = [1.0f32, 0.5];
        let attrs = json!({"loss": {"name": "mean_squared_error"}});
        let y = eval("loss", &attrs, &ops, &[&t, &p, &w]);
        // per sample: (1 + 0) / 2 = 0.5 and (0 + 4) / 2 = 2; weighted sum 1.5 over 2 rows
        assert_close(&y, &[0.75], 1e-6, "loss value");
        let mut op = make("loss", &attrs, &ops);
        let mut dp = vec![0.0f32; 4];
        let mut dxs: Vec<Option<&mut [f32]>> = vec![None, Some(&mut dp[..]), None];
        op.backward(&[&t, &p, &w], &[0.75], &[2.0], &mut dxs, 1);
        // d/dp of w·(p - t)²/2 / 2 rows, times the seed 2
        assert_close(&dp, &[1.0, 0.0, 0.0, 1.0], 1e-6, "loss gradient");
    }

    #[test]
    fn sparse_targets_must_be_one_id_per_sample() {
        let attrs = json!({"loss": {"name": "sparse_categorical_crossentropy"}});
        let ops = [Operand::fixed(&[2, 3]), Operand::fixed(&[2, 3])];
        let e = super::super::build("loss", &attrs, &ops)
            .err()
            .expect("refused")
            .0;
        assert!(e.contains("one class id"), "{e}");
        let ops = [Operand::fixed(&[3, 1]), Operand::fixed(&[2, 3])];
        let e = super::super::build("loss", &attrs, &ops)
            .err()
            .expect("refused")
            .0;
        assert!(e.contains("different numbers of samples"), "{e}");
    }
}
