//! Nodes without inputs that a traced graph reads: `Variable` (a weight a
//! custom layer made with `add_weight`) and `Constant` (an array or a number
//! written into `call`). Their values have no batch axis; the model reads them
//! in place instead of running a forward pass.

use super::{field, init_field, Ctx, Layer, Param, Tensor};
use crate::error::{Error, Result};
use crate::regularizer::Regularizer;
use crate::rng::Key;
use serde_json::Value;

/// A shape from `config["shape"]`: non-negative integers (an empty list is a scalar).
fn shape_field(name: &str, config: &Value) -> Result<Vec<usize>> {
    field(config, "shape")
        .as_array()
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<Vec<_>>>()
        })
        .filter(|dims| dims.len() <= crate::ops::MAX_RANK)
        .ok_or_else(|| {
            Error(format!(
                "{name}: 'shape' must be a list of at most {} non-negative integers, got {}",
                crate::ops::MAX_RANK,
                field(config, "shape")
            ))
        })
        .and_then(|dims| {
            crate::sizing::shape(&format!("{name}: 'shape'"), &dims)?;
            Ok(dims)
        })
}

/// A weight of a custom layer, with its initializer and regularizer.
pub struct Variable {
    params: [Param; 1],
}

impl Variable {
    /// From `{"shape": [...], "initializer": ..., "regularizer": ..., "trainable_weight": bool}`.
    pub fn build(name: &str, config: &Value, key: Key) -> Result<Self> {
        let shape = shape_field(name, config)?;
        let init = init_field(config, "initializer", "glorot_uniform")
            .map_err(|e| Error(format!("{name}: {e}")))?;
        let regularizer = Regularizer::from_spec(field(config, "regularizer"))
            .map_err(|e| Error(format!("{name}: {e}")))?;
        let mut param = Param::new("variable", &shape, &init, key.fold(0), regularizer)?;
        if field(config, "trainable_weight") == &Value::Bool(false) {
            param = param.non_trainable();
        }
        Ok(Variable { params: [param] })
    }
}

impl Layer for Variable {
    fn output_shape(&self) -> &[usize] {
        self.params[0].value.shape()
    }

    fn output_batched(&self) -> bool {
        false
    }

    fn source(&self) -> Option<&[f32]> {
        Some(self.params[0].value_slice())
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn forward(&mut self, _x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx<'_>) {
        y.copy_from_slice(self.params[0].value_slice());
    }

    /// `dy` is the gradient of the weight itself (summed over its readers).
    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        _dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        self.params[0].grad_slice_mut().copy_from_slice(dy);
    }
}

/// A fixed array: `{"shape": [...], "value": [numbers, row-major]}`.
pub struct Constant {
    value: Tensor,
}

impl Constant {
    pub fn build(name: &str, config: &Value) -> Result<Self> {
        let shape = shape_field(name, config)?;
        let size: usize = shape.iter().product();
        let values = field(config, "value")
            .as_array()
            .filter(|v| v.len() == size)
            .and_then(|v| {
                v.iter()
                    .map(|x| x.as_f64().map(|x| x as f32))
                    .collect::<Option<Vec<f32>>>()
            })
            .ok_or_else(|| {
                Error(format!(
                    "{name}: 'value' must be a list of {size} numbers for shape {shape:?}"
                ))
            })?;
        let value = Tensor::from_shape_vec(shape, values).expect("size checked");
        Ok(Constant { value })
    }
}

impl Layer for Constant {
    fn output_shape(&self) -> &[usize] {
        self.value.shape()
    }

    fn output_batched(&self) -> bool {
        false
    }

    fn source(&self) -> Option<&[f32]> {
        self.value.as_slice()
    }

    fn forward(&mut self, _x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx<'_>) {
        y.copy_from_slice(self.value.as_slice().expect("contiguous"));
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        _dy: &mut [f32],
        _dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
    }
}

/// The targets of output `head` for the current batch, as a graph value (what a
/// loss written in Python reads as `y_true`); the model fills it from the batch.
pub struct Targets {
    head: usize,
    shape: Vec<usize>,
}

impl Targets {
    /// From `{"head": k, "shape": [per-sample shape]}`.
    pub fn build(name: &str, config: &Value) -> Result<Self> {
        let head = field(config, "head")
            .as_u64()
            .ok_or_else(|| Error(format!("{name}: 'head' must be an output's index")))?;
        Ok(Targets {
            head: head as usize,
            shape: shape_field(name, config)?,
        })
    }
}

impl Layer for Targets {
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn target_head(&self) -> Option<usize> {
        Some(self.head)
    }

    fn forward(&mut self, _x: &[f32], _y: &mut [f32], _rows: usize, _ctx: &Ctx<'_>) {}

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        _dy: &mut [f32],
        _dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
    }
}
