//! Merge layers: several inputs into one output. Add, Subtract, Multiply,
//! Average, Maximum and Minimum combine their inputs element by element, with
//! Keras's broadcasting of the per-sample shapes (right-aligned, sizes equal or
//! 1); Concatenate joins them along an axis.
//!
//! As in Keras, the elementwise result is folded left to right:
//! `((x0 op x1) op x2) ...`; Maximum and Minimum send each gradient to the first
//! input that holds the winning value (TensorFlow's tie rule).

use super::{field, sample_axis, Ctx, Layer, MaskFlow};
use crate::error::{Error, Result};
use crate::parallel::{for_each_block, for_each_row};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOp {
    Add,
    Subtract,
    Multiply,
    Average,
    Maximum,
    Minimum,
}

impl MergeOp {
    fn from_class(class: &str) -> Option<Self> {
        Some(match class {
            "Add" => MergeOp::Add,
            "Subtract" => MergeOp::Subtract,
            "Multiply" => MergeOp::Multiply,
            "Average" => MergeOp::Average,
            "Maximum" => MergeOp::Maximum,
            "Minimum" => MergeOp::Minimum,
            _ => return None,
        })
    }

    fn combine(self, acc: f32, v: f32) -> f32 {
        match self {
            MergeOp::Add | MergeOp::Average => acc + v,
            MergeOp::Subtract => acc - v,
            MergeOp::Multiply => acc * v,
            // NaN wins, as in NumPy and TensorFlow (f32::max would drop it); a tie
            // keeps the earlier input.
            MergeOp::Maximum if v > acc || v.is_nan() => v,
            MergeOp::Minimum if v < acc || v.is_nan() => v,
            MergeOp::Maximum | MergeOp::Minimum => acc,
        }
    }
}

/// Builds the merge layer `class` for inputs of per-sample `input_shapes`, or
/// None when `class` is not a merge layer.
pub fn build(
    class: &str,
    name: &str,
    config: &Value,
    input_shapes: &[&[usize]],
) -> Result<Option<Box<dyn Layer>>> {
    if class == "Dot" {
        return Ok(Some(Box::new(super::dot::Dot::build(
            name,
            config,
            input_shapes,
        )?)));
    }
    if class == "Concatenate" {
        return Ok(Some(Box::new(Concatenate::build(
            name,
            config,
            input_shapes,
        )?)));
    }
    match MergeOp::from_class(class) {
        Some(op) => Ok(Some(Box::new(Elementwise::build(
            class,
            name,
            op,
            input_shapes,
        )?))),
        None => Ok(None),
    }
}

/// Shapes as Keras prints them, batch axis first: `(None, 16)`.
fn keras_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("(None, {})", dims.join(", "))
}

fn keras_shapes(shapes: &[&[usize]]) -> String {
    let all: Vec<String> = shapes.iter().map(|s| keras_shape(s)).collect();
    format!("[{}]", all.join(", "))
}

/// Right-aligned broadcast of per-sample shapes, as NumPy does after the batch axis.
fn broadcast_shape(shapes: &[&[usize]]) -> Option<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let pad = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[pad + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}

/// Where each element of one sample's output reads an input that broadcasts.
fn broadcast_map(input: &[usize], output: &[usize]) -> Vec<u32> {
    let pad = output.len() - input.len();
    // The input's stride for each output axis (0 where the input has size 1 or no axis).
    let mut strides = vec![0usize; output.len()];
    let mut stride = 1;
    for i in (0..input.len()).rev() {
        if input[i] != 1 {
            strides[pad + i] = stride;
        }
        stride *= input[i];
    }
    let total: usize = output.iter().product();
    let mut map = Vec::with_capacity(total);
    let mut index = vec![0usize; output.len()];
    for _ in 0..total {
        map.push(
            index
                .iter()
                .zip(&strides)
                .map(|(i, s)| i * s)
                .sum::<usize>() as u32,
        );
        for axis in (0..output.len()).rev() {
            index[axis] += 1;
            if index[axis] < output[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    map
}

/// One input of an elementwise merge: its size per sample and, when it
/// broadcasts, where each output element reads it.
struct Operand {
    len: usize,
    map: Option<Vec<u32>>,
}

impl Operand {
    fn index(&self, j: usize) -> usize {
        self.map.as_ref().map_or(j, |m| m[j] as usize)
    }
}

/// Add, Subtract, Multiply, Average, Maximum, Minimum.
pub struct Elementwise {
    op: MergeOp,
    operands: Vec<Operand>,
    output_shape: Vec<usize>,
    out_len: usize,
}

impl Elementwise {
    pub fn build(class: &str, name: &str, op: MergeOp, shapes: &[&[usize]]) -> Result<Self> {
        if shapes.is_empty() {
            crate::bail!("{class} '{name}': a merge layer needs at least one input");
        }
        if op == MergeOp::Subtract && shapes.len() != 2 {
            crate::bail!(
                "{class} '{name}': a Subtract layer takes exactly 2 inputs, got {}",
                shapes.len()
            );
        }
        let output_shape = broadcast_shape(shapes).ok_or_else(|| {
            Error(format!(
                "{class} '{name}': inputs must have the same shape, or shapes that broadcast \
                 (each axis equal or 1); got input shapes {}",
                keras_shapes(shapes)
            ))
        })?;
        let out_len = output_shape.iter().product();
        let operands = shapes
            .iter()
            .map(|s| Operand {
                len: s.iter().product(),
                map: (*s != output_shape.as_slice()).then(|| broadcast_map(s, &output_shape)),
            })
            .collect();
        Ok(Elementwise {
            op,
            operands,
            output_shape,
            out_len,
        })
    }

    fn broadcasts(&self) -> bool {
        self.operands.iter().any(|o| o.map.is_some())
    }

    /// Input `k`'s value at output element `j` of sample `r`.
    fn value(&self, xs: &[&[f32]], k: usize, r: usize, j: usize) -> f32 {
        let o = &self.operands[k];
        xs[k][r * o.len + o.index(j)]
    }

    /// The folded result at one output element, from the inputs' values there.
    fn fold(&self, at: impl Fn(usize) -> f32) -> f32 {
        let mut acc = at(0);
        for k in 1..self.operands.len() {
            acc = self.op.combine(acc, at(k));
        }
        if self.op == MergeOp::Average {
            acc / self.operands.len() as f32
        } else {
            acc
        }
    }

    /// d(output)/d(input k) at one element, given the inputs' values and the output.
    fn local_grad(&self, k: usize, y: f32, at: impl Fn(usize) -> f32) -> f32 {
        let n = self.operands.len();
        match self.op {
            MergeOp::Add => 1.0,
            MergeOp::Subtract => {
                if k == 0 {
                    1.0
                } else {
                    -1.0
                }
            }
            MergeOp::Average => 1.0 / n as f32,
            MergeOp::Multiply => (0..n).filter(|&j| j != k).map(&at).product(),
            MergeOp::Maximum | MergeOp::Minimum => {
                let winner = (0..n).position(|j| at(j) == y).unwrap_or(0);
                if winner == k {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

impl Layer for Elementwise {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn mask_flow(&self) -> MaskFlow {
        MaskFlow::Combine
    }

    /// One input: the output is that input.
    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, ctx: &Ctx<'_>) {
        self.forward_many(&[x], y, rows, ctx);
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        self.backward_many(&[x], y, dy, &mut [dx], rows);
    }

    fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize, _ctx: &Ctx<'_>) {
        let y = &mut y[..rows * self.out_len];
        if !self.broadcasts() {
            // One pass per input over a cache-sized block, each a loop that vectorises.
            let (op, n) = (self.op, self.operands.len());
            for_each_block(y, |at, block| {
                block.copy_from_slice(&xs[0][at..at + block.len()]);
                for x in &xs[1..] {
                    for (v, &xv) in block.iter_mut().zip(&x[at..]) {
                        *v = op.combine(*v, xv);
                    }
                }
                if op == MergeOp::Average {
                    block.iter_mut().for_each(|v| *v /= n as f32);
                }
            });
            return;
        }
        for (r, row) in y.chunks_mut(self.out_len.max(1)).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = self.fold(|k| self.value(xs, k, r, j));
            }
        }
    }

    fn backward_many(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &mut [f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        for (k, dx) in dxs.iter_mut().enumerate() {
            let Some(dx) = dx.as_deref_mut() else {
                continue;
            };
            let operand = &self.operands[k];
            let dx = &mut dx[..rows * operand.len];
            // Sums and differences pass the gradient on as it is (or scaled).
            let same = operand.map.is_none() && !self.broadcasts();
            let scale = match self.op {
                MergeOp::Add => Some(1.0),
                MergeOp::Subtract => Some(if k == 0 { 1.0 } else { -1.0 }),
                MergeOp::Average => Some(1.0 / self.operands.len() as f32),
                _ => None,
            };
            if let (true, Some(scale)) = (same, scale) {
                for_each_block(dx, |at, block| {
                    for (d, &g) in block.iter_mut().zip(&dy[at..]) {
                        *d = g * scale;
                    }
                });
                continue;
            }
            if same {
                for_each_block(dx, |at, block| {
                    for (i, d) in block.iter_mut().enumerate() {
                        let e = at + i;
                        *d = dy[e] * self.local_grad(k, y[e], |j| xs[j][e]);
                    }
                });
                continue;
            }
            // Sums over the broadcast axes, in output order (fixed, so deterministic).
            dx.fill(0.0);
            for r in 0..rows {
                for j in 0..self.out_len {
                    let e = r * self.out_len + j;
                    let g = dy[e] * self.local_grad(k, y[e], |i| self.value(xs, i, r, j));
                    dx[r * operand.len + operand.index(j)] += g;
                }
            }
        }
    }
}

/// Joins its inputs along one (non-batch) axis.
pub struct Concatenate {
    /// Per input: values per sample, and the contiguous run it adds at each
    /// position before the axis.
    lens: Vec<usize>,
    runs: Vec<usize>,
    /// Positions before the axis (product of the leading per-sample sizes).
    outer: usize,
    /// The per-sample axis joined along (0: the time axis of sequences).
    axis: usize,
    output_shape: Vec<usize>,
    out_len: usize,
}

impl Concatenate {
    pub fn build(name: &str, config: &Value, shapes: &[&[usize]]) -> Result<Self> {
        let Some(first) = shapes.first() else {
            crate::bail!("Concatenate '{name}': needs at least one input");
        };
        let axis_value = field(config, "axis");
        let axis = sample_axis(&format!("Concatenate '{name}'"), axis_value, first)?;
        let matches = shapes.iter().all(|s| {
            s.len() == first.len()
                && s.iter()
                    .zip(first.iter())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b)
        });
        if !matches {
            crate::bail!(
                "Concatenate '{name}': inputs must have the same shape except along the \
                 concatenation axis {}; got input shapes {}",
                if axis_value.is_null() {
                    "-1".to_string()
                } else {
                    axis_value.to_string()
                },
                keras_shapes(shapes)
            );
        }
        let inner: usize = first[axis + 1..].iter().product();
        let mut output_shape = first.to_vec();
        output_shape[axis] = shapes.iter().map(|s| s[axis]).sum();
        Ok(Concatenate {
            lens: shapes.iter().map(|s| s.iter().product()).collect(),
            runs: shapes.iter().map(|s| s[axis] * inner).collect(),
            outer: first[..axis].iter().product(),
            axis,
            out_len: output_shape.iter().product(),
            output_shape,
        })
    }

    /// Calls `f(k, offset in input k's sample, offset in the output sample, run)`
    /// for every contiguous run of one sample.
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let mut out_at = 0;
        for o in 0..self.outer {
            for (k, &run) in self.runs.iter().enumerate() {
                f(k, o * run, out_at, run);
                out_at += run;
            }
        }
    }
}

impl Layer for Concatenate {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn mask_flow(&self) -> MaskFlow {
        if self.axis == 0 {
            MaskFlow::JoinSteps
        } else {
            MaskFlow::Combine
        }
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, ctx: &Ctx<'_>) {
        self.forward_many(&[x], y, rows, ctx);
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        self.backward_many(&[x], y, dy, &mut [dx], rows);
    }

    fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize, _ctx: &Ctx<'_>) {
        let sample = |r: usize, row: &mut [f32]| {
            self.for_each_run(|k, from, to, run| {
                let x = &xs[k][r * self.lens[k] + from..][..run];
                row[to..to + run].copy_from_slice(x);
            });
        };
        for_each_row(&mut y[..rows * self.out_len], self.out_len, sample);
    }

    fn backward_many(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        dy: &mut [f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        for r in 0..rows {
            let row = &dy[r * self.out_len..][..self.out_len];
            self.for_each_run(|k, from, to, run| {
                if let Some(dx) = dxs[k].as_deref_mut() {
                    dx[r * self.lens[k] + from..][..run].copy_from_slice(&row[to..to + run]);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Ctx<'static> {
        Ctx::for_tests(true)
    }

    fn run(
        class: &str,
        config: Value,
        shapes: &[&[usize]],
        xs: &[Vec<f32>],
        rows: usize,
    ) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut layer = build(class, "m", &config, shapes).unwrap().unwrap();
        let out: usize = layer.output_shape().iter().product();
        let mut y = vec![0.0; rows * out];
        let refs: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        layer.forward_many(&refs, &mut y, rows, &ctx());
        let mut dy: Vec<f32> = (0..y.len()).map(|i| 1.0 + i as f32).collect();
        let mut dxs: Vec<Vec<f32>> = xs.iter().map(|x| vec![f32::NAN; x.len()]).collect();
        let mut slots: Vec<Option<&mut [f32]>> =
            dxs.iter_mut().map(|d| Some(d.as_mut_slice())).collect();
        layer.backward_many(&refs, &y, &mut dy, &mut slots, rows);
        (y, dxs)
    }

    #[test]
    fn add_broadcasts_and_sums_the_gradient_over_broadcast_axes() {
        // (2, 3) + (3,) per sample, 2 samples.
        let a: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let b = vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0];
        let (y, dxs) = run(
            "Add",
            json!({}),
            &[&[2, 3], &[3]],
            &[a.clone(), b.clone()],
            2,
        );
        for r in 0..2 {
            for i in 0..6 {
                assert_eq!(y[r * 6 + i], a[r * 6 + i] + b[r * 3 + i % 3]);
            }
        }
        let dy: Vec<f32> = (0..12).map(|i| 1.0 + i as f32).collect();
        assert_eq!(dxs[0], dy);
        // b's gradient: the two rows of each sample summed.
        assert_eq!(
            dxs[1],
            vec![
                1.0 + 4.0,
                2.0 + 5.0,
                3.0 + 6.0,
                7.0 + 10.0,
                8.0 + 11.0,
                9.0 + 12.0
            ]
        );
    }

    #[test]
    fn maximum_sends_ties_to_the_first_input() {
        let (y, dxs) = run(
            "Maximum",
            json!({}),
            &[&[3], &[3], &[3]],
            &[
                vec![1.0, 5.0, 2.0],
                vec![1.0, 4.0, 7.0],
                vec![0.0, 5.0, 7.0],
            ],
            1,
        );
        assert_eq!(y, vec![1.0, 5.0, 7.0]);
        assert_eq!(dxs[0], vec![1.0, 2.0, 0.0]);
        assert_eq!(dxs[1], vec![0.0, 0.0, 3.0]);
        assert_eq!(dxs[2], vec![0.0, 0.0, 0.0]);
    }

    #[test]
    fn maximum_and_minimum_propagate_nan() {
        for class in ["Maximum", "Minimum"] {
            let (y, _) = run(
                class,
                json!({}),
                &[&[2], &[2]],
                &[vec![f32::NAN, 1.0], vec![1.0, f32::NAN]],
                1,
            );
            assert!(y.iter().all(|v| v.is_nan()), "{class}: {y:?}");
        }
    }

    #[test]
    fn multiply_and_average_gradients() {
        let (y, dxs) = run(
            "Multiply",
            json!({}),
            &[&[2], &[2], &[2]],
            &[vec![2.0, 3.0], vec![5.0, 7.0], vec![11.0, 13.0]],
            1,
        );
        assert_eq!(y, vec![110.0, 273.0]);
        assert_eq!(dxs[0], vec![55.0, 2.0 * 91.0]);
        assert_eq!(dxs[2], vec![10.0, 2.0 * 21.0]);
        let (y, dxs) = run(
            "Average",
            json!({}),
            &[&[1], &[1]],
            &[vec![1.0], vec![4.0]],
            1,
        );
        assert_eq!((y, dxs[1].clone()), (vec![2.5], vec![0.5]));
    }

    #[test]
    fn concatenate_middle_axis_round_trips() {
        // Per sample (2, 1, 2) and (2, 2, 2) joined on axis 2 (per-sample axis 1).
        let a: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let b: Vec<f32> = (100..116).map(|v| v as f32).collect();
        let (y, dxs) = run(
            "Concatenate",
            json!({"axis": 2}),
            &[&[2, 1, 2], &[2, 2, 2]],
            &[a.clone(), b.clone()],
            2,
        );
        assert_eq!(y.len(), 24);
        assert_eq!(&y[..6], &[0.0, 1.0, 100.0, 101.0, 102.0, 103.0]);
        assert_eq!(&y[12..18], &[4.0, 5.0, 108.0, 109.0, 110.0, 111.0]);
        // The gradient is the upstream gradient split back the same way.
        let dy: Vec<f32> = (0..24).map(|i| 1.0 + i as f32).collect();
        assert_eq!(&dxs[0][..2], &dy[..2]);
        assert_eq!(&dxs[1][..4], &dy[2..6]);
    }

    #[test]
    fn mismatched_shapes_name_the_layer_and_shapes() {
        let err = build("Add", "skip_add", &json!({}), &[&[16], &[8]])
            .err()
            .unwrap();
        assert!(
            err.0.contains("skip_add") && err.0.contains("(None, 16), (None, 8)"),
            "{}",
            err.0
        );
        let err = build(
            "Concatenate",
            "cat",
            &json!({"axis": -1}),
            &[&[4, 3], &[5, 2]],
        )
        .err()
        .unwrap();
        assert!(
            err.0.contains("cat") && err.0.contains("(None, 4, 3)"),
            "{}",
            err.0
        );
        let err = build("Subtract", "s", &json!({}), &[&[2]]).err().unwrap();
        assert!(err.0.contains("exactly 2"), "{}", err.0);
    }
}
