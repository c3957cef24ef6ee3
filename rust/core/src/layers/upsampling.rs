//! UpSampling2D with nearest-neighbour interpolation (channels last): every
//! pixel is repeated size.0 times down and size.1 times across; backward sums
//! the gradient of each block of copies.

use super::window::{image_shape, pair};
use super::{Ctx, Layer};
use crate::error::{Error, Result};
use serde_json::Value;

pub struct UpSampling2D {
    input: (usize, usize),
    size: (usize, usize),
    channels: usize,
    output_shape: Vec<usize>,
}

impl UpSampling2D {
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let (h, w, channels) = image_shape(name, input_shape)?;
        let size = pair(config, name, "size")?;
        match super::field(config, "interpolation")
            .as_str()
            .unwrap_or("nearest")
        {
            "nearest" => {}
            other => {
                return Err(Error(format!(
                    "{name}: interpolation \"{other}\" is not supported; use \"nearest\""
                )))
            }
        }
        Ok(UpSampling2D {
            input: (h, w),
            size,
            channels,
            output_shape: vec![h * size.0, w * size.1, channels],
        })
    }

    /// Calls `f(input offset, output offset)` for every copied pixel of one
    /// sample (offsets of the pixel's first channel).
    fn pixels(&self, mut f: impl FnMut(usize, usize)) {
        let ((h, w), (sh, sw), c) = (self.input, self.size, self.channels);
        let ow = w * sw;
        for oy in 0..h * sh {
            for ox in 0..ow {
                f(((oy / sh) * w + ox / sw) * c, (oy * ow + ox) * c);
            }
        }
    }

    fn sizes(&self) -> (usize, usize) {
        (
            self.input.0 * self.input.1 * self.channels,
            self.output_shape.iter().product(),
        )
    }
}

impl Layer for UpSampling2D {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx) {
        let ((xs, ys), c) = (self.sizes(), self.channels);
        for (xi, yi) in x.chunks_exact(xs).zip(y.chunks_exact_mut(ys)) {
            self.pixels(|i, o| yi[o..][..c].copy_from_slice(&xi[i..][..c]));
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
        let Some(dx) = dx else { return };
        let ((xs, ys), c) = (self.sizes(), self.channels);
        for (di, gi) in dx.chunks_exact_mut(xs).zip(dy.chunks_exact(ys)) {
            di.fill(0.0);
            self.pixels(|i, o| {
                for (d, &g) in di[i..][..c].iter_mut().zip(&gi[o..][..c]) {
                    *d += g;
                }
            });
        }
    }
}
