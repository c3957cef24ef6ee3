//! UpSampling2D (channels last). "nearest" repeats every pixel size.0 times
//! down and size.1 times across; "bilinear" interpolates between the two
//! nearest input pixels along each axis with half-pixel centres, clamped at
//! the edges (TensorFlow's and JAX's resize). Backward sends each output
//! gradient back to the pixels it was made from, with the same weights.

use super::window::{image_shape, pair};
use super::{Ctx, Layer};
use crate::error::{Error, Result};
use serde_json::Value;

/// Where one output index along an axis reads from: two input indices and their weights.
#[derive(Clone, Copy, Debug)]
struct Tap {
    lo: usize,
    hi: usize,
    w_hi: f32,
}

impl Tap {
    fn w_lo(self) -> f32 {
        1.0 - self.w_hi
    }
}

/// The taps of every output index for an axis of `input` upsampled `factor` times.
fn taps(input: usize, factor: usize, bilinear: bool) -> Vec<Tap> {
    (0..input * factor)
        .map(|o| {
            if !bilinear {
                return Tap {
                    lo: o / factor,
                    hi: o / factor,
                    w_hi: 0.0,
                };
            }
            // The output pixel's centre, in input coordinates.
            let src = ((o as f64 + 0.5) / factor as f64 - 0.5).max(0.0);
            let lo = (src.floor() as usize).min(input - 1);
            let hi = (lo + 1).min(input - 1);
            Tap {
                lo,
                hi,
                w_hi: if hi == lo {
                    0.0
                } else {
                    (src - lo as f64) as f32
                },
            }
        })
        .collect()
}

pub struct UpSampling2D {
    input: (usize, usize),
    channels: usize,
    rows: Vec<Tap>,
    cols: Vec<Tap>,
    output_shape: Vec<usize>,
}

impl UpSampling2D {
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let (h, w, channels) = image_shape(name, input_shape)?;
        let (sh, sw) = pair(config, name, "size")?;
        let bilinear = match super::field(config, "interpolation")
            .as_str()
            .unwrap_or("nearest")
        {
            "nearest" => false,
            "bilinear" => true,
            other => {
                return Err(Error(format!(
                    "{name}: interpolation \"{other}\" is not supported; use \"nearest\" or \"bilinear\""
                )))
            }
        };
        Ok(UpSampling2D {
            input: (h, w),
            channels,
            rows: taps(h, sh, bilinear),
            cols: taps(w, sw, bilinear),
            output_shape: vec![h * sh, w * sw, channels],
        })
    }

    /// Calls `f(input offset, output offset, weight)` for every (input pixel,
    /// output pixel) pair of one sample with a non-zero weight (offsets of the
    /// pixels' first channels).
    fn pairs(&self, mut f: impl FnMut(usize, usize, f32)) {
        let (w, c, ow) = (self.input.1, self.channels, self.cols.len());
        for (oy, ty) in self.rows.iter().enumerate() {
            for (ox, tx) in self.cols.iter().enumerate() {
                let out = (oy * ow + ox) * c;
                for (iy, wy) in [(ty.lo, ty.w_lo()), (ty.hi, ty.w_hi)] {
                    for (ix, wx) in [(tx.lo, tx.w_lo()), (tx.hi, tx.w_hi)] {
                        if wy * wx != 0.0 {
                            f((iy * w + ix) * c, out, wy * wx);
                        }
                    }
                }
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
            yi.fill(0.0);
            self.pairs(|i, o, wt| {
                for (d, &s) in yi[o..][..c].iter_mut().zip(&xi[i..][..c]) {
                    *d += wt * s;
                }
            });
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
            self.pairs(|i, o, wt| {
                for (d, &g) in di[i..][..c].iter_mut().zip(&gi[o..][..c]) {
                    *d += wt * g;
                }
            });
        }
    }
}
