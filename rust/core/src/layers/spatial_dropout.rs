//! SpatialDropout1D/2D (channels last): in training, drop whole channels of a
//! sample (every position at once) with probability `rate`, scaling the kept
//! ones by 1/(1-rate); identity at inference.

use super::{field, Ctx, Layer};
use crate::error::{Error, Result};
use serde_json::Value;

pub struct SpatialDropout {
    rate: f32,
    channels: usize,
    output_shape: Vec<usize>,
    /// One multiplier per (sample, channel) of the last training forward: 0 or 1/(1-rate).
    mask: Vec<f32>,
    mask_active: bool,
}

impl SpatialDropout {
    /// `spatial`: the number of axes between the batch and the channels.
    pub fn build(
        name: &str,
        config: &Value,
        input_shape: &[usize],
        spatial: usize,
    ) -> Result<Self> {
        if input_shape.len() != spatial + 1 {
            return Err(Error(format!(
                "{name}: expected inputs of rank {}, got per-sample shape {input_shape:?}",
                spatial + 2
            )));
        }
        let rate = field(config, "rate").as_f64().unwrap_or(f64::NAN);
        if !(0.0..1.0).contains(&rate) {
            return Err(Error(format!(
                "{name}: 'rate' must be in [0, 1), got {}",
                field(config, "rate")
            )));
        }
        Ok(SpatialDropout {
            rate: rate as f32,
            channels: input_shape[spatial],
            output_shape: input_shape.to_vec(),
            mask: Vec::new(),
            mask_active: false,
        })
    }

    /// out = inp × the channel's multiplier, sample by sample.
    fn apply(&self, inp: &[f32], out: &mut [f32]) {
        let c = self.channels;
        let sample: usize = self.output_shape.iter().product();
        for ((xi, yi), m) in inp
            .chunks_exact(sample)
            .zip(out.chunks_exact_mut(sample))
            .zip(self.mask.chunks_exact(c))
        {
            for (xp, yp) in xi.chunks_exact(c).zip(yi.chunks_exact_mut(c)) {
                for ((o, &v), &k) in yp.iter_mut().zip(xp).zip(m) {
                    *o = v * k;
                }
            }
        }
    }
}

impl Layer for SpatialDropout {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, ctx: &Ctx) {
        self.mask_active = ctx.training && self.rate > 0.0;
        if !self.mask_active {
            y.copy_from_slice(x);
            return;
        }
        let (rate, scale, key) = (self.rate, 1.0 / (1.0 - self.rate), ctx.key);
        // Draw i (sample * channels + channel) depends only on (key, i).
        self.mask = (0..rows * self.channels)
            .map(|i| {
                if key.uniform_f32(i as u64) >= rate {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        self.apply(x, y);
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        match dx {
            Some(dx) if self.mask_active => self.apply(dy, dx),
            Some(dx) => dx.copy_from_slice(dy),
            None => {}
        }
    }
}
