//! Dropout: in training, zero each unit with probability `rate` and scale the
//! kept ones by 1/(1-rate); identity at inference.

use super::{field, Ctx, Layer};
use crate::error::{Error, Result};
use crate::parallel::for_each_block;
use serde_json::Value;

pub struct Dropout {
    rate: f32,
    output_shape: Vec<usize>,
    /// Per-element multiplier of the last training forward: 0 or 1/(1-rate).
    mask: Vec<f32>,
    mask_active: bool,
}

impl Dropout {
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let rate = field(config, "rate").as_f64().unwrap_or(f64::NAN);
        if !(0.0..1.0).contains(&rate) {
            return Err(Error(format!(
                "{name}: 'rate' must be in [0, 1), got {}",
                field(config, "rate")
            )));
        }
        Ok(Dropout {
            rate: rate as f32,
            output_shape: input_shape.to_vec(),
            mask: Vec::new(),
            mask_active: false,
        })
    }
}

impl Layer for Dropout {
    fn mask_flow(&self) -> super::MaskFlow {
        super::MaskFlow::Keep
    }

    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, ctx: &Ctx) {
        self.mask_active = ctx.training && self.rate > 0.0;
        if !self.mask_active {
            y.copy_from_slice(x);
            return;
        }
        let (rate, scale, key) = (self.rate, 1.0 / (1.0 - self.rate), ctx.key);
        self.mask.resize(x.len(), 0.0);
        // Element i's draw depends only on (key, i): the same mask for any thread count.
        for_each_block(&mut self.mask, |off, m| {
            for (j, v) in m.iter_mut().enumerate() {
                *v = if key.uniform_f32((off + j) as u64) >= rate {
                    scale
                } else {
                    0.0
                };
            }
        });
        for ((o, &v), &m) in y.iter_mut().zip(x).zip(&self.mask) {
            *o = v * m;
        }
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
            if self.mask_active {
                for ((d, &g), &m) in dx.iter_mut().zip(dy.iter()).zip(&self.mask) {
                    *d = g * m;
                }
            } else {
                dx.copy_from_slice(dy);
            }
        }
    }
}
