//! Masking: a time step whose every feature equals `mask_value` is padding.
//! The layer zeroes those steps and makes the mask that recurrent layers use
//! to skip them.

use super::{field, Ctx, Layer, MaskFlow};
use crate::error::{Error, Result};
use serde_json::Value;

pub struct Masking {
    mask_value: f32,
    /// Values per time step.
    width: usize,
    output_shape: Vec<usize>,
    keep: Vec<bool>,
}

impl Masking {
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        if input_shape.len() < 2 {
            return Err(Error(format!(
                "{name}: expected inputs of rank 3 or more (batch, timesteps, features), got per-sample shape {input_shape:?}"
            )));
        }
        let mask_value = field(config, "mask_value").as_f64().unwrap_or(0.0) as f32;
        Ok(Masking {
            mask_value,
            width: input_shape[1..].iter().product(),
            output_shape: input_shape.to_vec(),
            keep: Vec::new(),
        })
    }
}

impl Layer for Masking {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn mask_flow(&self) -> MaskFlow {
        MaskFlow::FromInput
    }

    fn compute_mask(&self, x: &[f32], _rows: usize, mask: &mut [bool]) {
        for (m, step) in mask.iter_mut().zip(x.chunks(self.width)) {
            *m = step.iter().any(|&v| v != self.mask_value);
        }
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, _ctx: &Ctx<'_>) {
        self.keep.resize(rows * self.output_shape[0], false);
        let mut keep = std::mem::take(&mut self.keep);
        self.compute_mask(x, rows, &mut keep);
        for ((out, step), &k) in y
            .chunks_mut(self.width)
            .zip(x.chunks(self.width))
            .zip(&keep)
        {
            if k {
                out.copy_from_slice(step);
            } else {
                out.fill(0.0);
            }
        }
        self.keep = keep;
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
            for ((d, g), &k) in dx
                .chunks_mut(self.width)
                .zip(dy.chunks(self.width))
                .zip(&self.keep)
            {
                if k {
                    d.copy_from_slice(g);
                } else {
                    d.fill(0.0);
                }
            }
        }
    }
}
