//! Flatten and Reshape: the same samples, another per-sample shape.

use super::{field, Ctx, Layer};
use crate::error::{Error, Result};
use serde_json::Value;

pub struct Reshape {
    output_shape: Vec<usize>,
}

impl Reshape {
    pub fn flatten(input_shape: &[usize]) -> Self {
        Reshape {
            output_shape: vec![input_shape.iter().product()],
        }
    }

    /// `target_shape` may hold one -1, inferred from the input size.
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let target = field(config, "target_shape")
            .as_array()
            .ok_or_else(|| Error(format!("{name}: 'target_shape' must be a list of integers")))?;
        let size: usize = input_shape.iter().product();
        let mut dims = Vec::with_capacity(target.len());
        let mut unknown = None;
        for (i, d) in target.iter().enumerate() {
            match d.as_i64() {
                Some(-1) if unknown.is_none() => {
                    unknown = Some(i);
                    dims.push(1);
                }
                Some(v) if v > 0 => dims.push(v as usize),
                _ => {
                    return Err(Error(format!(
                        "{name}: target_shape entries must be positive integers (one may be -1), got {d}"
                    )))
                }
            }
        }
        // (checked: a product that wraps, such as (2**62 + 1) * 4, must not pass for 4)
        let known = crate::sizing::product(&dims).ok_or_else(|| {
            Error(format!(
                "{name}: cannot reshape input of shape {input_shape:?} ({size} values) to \
                 {dims:?}: more values than can be counted"
            ))
        })?;
        if let Some(i) = unknown {
            if known == 0 || !size.is_multiple_of(known) {
                return Err(Error(format!(
                    "{name}: cannot reshape input of shape {input_shape:?} ({size} values) to {}",
                    Value::Array(target.clone())
                )));
            }
            dims[i] = size / known;
        } else if known != size {
            return Err(Error(format!(
                "{name}: cannot reshape input of shape {input_shape:?} ({size} values) to {dims:?} ({known} values)"
            )));
        }
        Ok(Reshape { output_shape: dims })
    }
}

impl Layer for Reshape {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn is_reshape(&self) -> bool {
        true
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx) {
        y.copy_from_slice(x);
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        if let Some(dx) = dx {
            dx.copy_from_slice(dy);
        }
    }
}
