//! `Op`: a node of a traced graph that runs one `ferrax.ops` function (the
//! ops a custom layer's or a subclassed model's `call` is made of). The op
//! itself (shape rule, forward, backward) lives in `crate::ops`.

use super::{field, Ctx, Layer};
use crate::error::{Error, Result};
use crate::ops::{self, Operand};
use serde_json::Value;

pub struct OpLayer {
    op: Box<dyn ops::Op>,
    /// The result's shape: per sample when batched (as every layer's), else whole.
    out_shape: Vec<usize>,
    /// All inputs and the result batched, and the op only renames the shape.
    reshape: bool,
}

impl OpLayer {
    /// From `{"op": "matmul", "attrs": {...}}` for inputs shaped as `inputs`.
    pub fn build(name: &str, config: &Value, inputs: &[Operand]) -> Result<Self> {
        let op_name = field(config, "op")
            .as_str()
            .ok_or_else(|| Error(format!("{name}: an op node needs 'op', the op's name")))?;
        let empty = Value::Object(Default::default());
        let attrs = match field(config, "attrs") {
            Value::Null => &empty,
            a => a,
        };
        let op = ops::build(op_name, attrs, inputs).map_err(|e| Error(format!("{name}: {e}")))?;
        let out = op.output().clone();
        let reshape = op.is_reshape() && out.batched && inputs.iter().all(|o| o.batched);
        Ok(OpLayer {
            out_shape: out.shape,
            reshape,
            op,
        })
    }
}

impl Layer for OpLayer {
    fn output_shape(&self) -> &[usize] {
        &self.out_shape
    }

    fn output_batched(&self) -> bool {
        self.op.output().batched
    }

    fn is_reshape(&self) -> bool {
        self.reshape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, _ctx: &Ctx<'_>) {
        self.op.forward(&[x], y, rows);
    }

    fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize, _ctx: &Ctx<'_>) {
        self.op.forward(xs, y, rows);
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        self.op.backward(&[x], y, dy, &mut [dx], rows);
    }

    fn backward_many(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &mut [f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        self.op.backward(xs, y, dy, dxs, rows);
    }
}
