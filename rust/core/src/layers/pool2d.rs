//! MaxPooling2D and AveragePooling2D (channels last). With "same" padding the
//! padded positions take no part: they never win a max and are not counted in
//! an average, as in TensorFlow.

use super::window::{image_shape, padding, pair, sequence_shape, Axis, Padding};
use super::{field, Ctx, Layer};
use crate::error::{Error, Result};
use crate::parallel::PARALLEL_THRESHOLD;
use rayon::prelude::*;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PoolKind {
    Max,
    Average,
}

pub struct Pool2D {
    kind: PoolKind,
    rows: Axis,
    cols: Axis,
    channels: usize,
    output_shape: Vec<usize>,
    /// For max pooling: the input element (index within its sample) that won
    /// each output element in the last forward pass.
    winners: Vec<u32>,
}

impl Pool2D {
    pub fn build(
        name: &str,
        config: &Value,
        input_shape: &[usize],
        kind: PoolKind,
    ) -> Result<Self> {
        let (h, w, channels) = image_shape(name, input_shape)?;
        let (ph, pw) = pair(config, name, "pool_size")?;
        let (sh, sw) = if field(config, "strides").is_null() {
            (ph, pw)
        } else {
            pair(config, name, "strides")?
        };
        let pad = padding(config, name, false)?;
        let rows = Axis::new(name, h, ph, sh, 1, pad)?;
        let cols = Axis::new(name, w, pw, sw, 1, pad)?;
        Ok(Self::new(kind, rows, cols, channels))
    }

    /// MaxPooling1D / AveragePooling1D: pooling over images of height 1.
    pub fn build_1d(
        name: &str,
        config: &Value,
        input_shape: &[usize],
        kind: PoolKind,
    ) -> Result<Self> {
        let (steps, channels) = sequence_shape(name, input_shape)?;
        let size = |key: &str| -> Result<Option<usize>> {
            let v = field(config, key);
            let n = match v.as_array().map(Vec::as_slice) {
                Some([one]) => one.as_u64(),
                _ if v.is_null() => return Ok(None),
                _ => v.as_u64(),
            };
            match n {
                Some(n) if n > 0 => Ok(Some(n as usize)),
                _ => Err(Error(format!(
                    "{name}: '{key}' must be a positive integer, got {v}"
                ))),
            }
        };
        let pool = size("pool_size")?.unwrap_or(2);
        let stride = size("strides")?.unwrap_or(pool);
        let pad = padding(config, name, false)?;
        let rows = Axis::new(name, 1, 1, 1, 1, Padding::Valid)?;
        let cols = Axis::new(name, steps, pool, stride, 1, pad)?;
        let mut layer = Self::new(kind, rows, cols, channels);
        layer.output_shape.remove(0);
        Ok(layer)
    }

    fn new(kind: PoolKind, rows: Axis, cols: Axis, channels: usize) -> Self {
        Pool2D {
            kind,
            rows,
            cols,
            channels,
            output_shape: vec![rows.output, cols.output, channels],
            winners: Vec::new(),
        }
    }

    /// Calls `f(output position index, input position index)` for every input
    /// position inside the window of each output position of one sample.
    fn windows(&self, mut f: impl FnMut(usize, usize)) {
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let out = oy * self.cols.output + ox;
                for ky in 0..self.rows.kernel {
                    let Some(iy) = self.rows.source(oy, ky) else {
                        continue;
                    };
                    for kx in 0..self.cols.kernel {
                        if let Some(ix) = self.cols.source(ox, kx) {
                            f(out, iy * self.cols.input + ix);
                        }
                    }
                }
            }
        }
    }

    /// How many real (unpadded) input positions each output window covers.
    fn counts(&self) -> Vec<f32> {
        let mut counts = vec![0.0f32; self.rows.output * self.cols.output];
        self.windows(|o, _| counts[o] += 1.0);
        counts
    }

    fn forward_sample(&self, x: &[f32], y: &mut [f32], winners: &mut [u32]) {
        let c = self.channels;
        match self.kind {
            PoolKind::Max => {
                y.fill(f32::NEG_INFINITY);
                // Strictly greater: the first maximum of a window wins, as in TensorFlow.
                self.windows(|o, i| {
                    // Branch-free selects over contiguous channels, so the loop vectorises.
                    let base = (i * c) as u32;
                    let (yo, wo) = (&mut y[o * c..][..c], &mut winners[o * c..][..c]);
                    for (ch, ((yv, wv), &xv)) in yo
                        .iter_mut()
                        .zip(wo.iter_mut())
                        .zip(&x[i * c..][..c])
                        .enumerate()
                    {
                        let better = xv > *yv;
                        *yv = if better { xv } else { *yv };
                        *wv = if better { base + ch as u32 } else { *wv };
                    }
                });
            }
            PoolKind::Average => {
                y.fill(0.0);
                self.windows(|o, i| {
                    for (yv, &xv) in y[o * c..][..c].iter_mut().zip(&x[i * c..][..c]) {
                        *yv += xv;
                    }
                });
                for (o, n) in self.counts().into_iter().enumerate() {
                    y[o * c..][..c].iter_mut().for_each(|v| *v /= n);
                }
            }
        }
    }

    fn backward_sample(&self, winners: &[u32], dy: &[f32], dx: &mut [f32]) {
        let c = self.channels;
        dx.fill(0.0);
        match self.kind {
            PoolKind::Max => {
                for (&w, &g) in winners.iter().zip(dy) {
                    dx[w as usize] += g;
                }
            }
            PoolKind::Average => {
                let counts = self.counts();
                self.windows(|o, i| {
                    for ch in 0..c {
                        dx[i * c + ch] += dy[o * c + ch] / counts[o];
                    }
                });
            }
        }
    }

    fn sizes(&self) -> (usize, usize) {
        (
            self.rows.input * self.cols.input * self.channels,
            self.rows.output * self.cols.output * self.channels,
        )
    }
}

impl Layer for Pool2D {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx) {
        let (xs, ys) = self.sizes();
        let mut winners = std::mem::take(&mut self.winners);
        winners.resize(y.len(), 0);
        let run = |((a, b), w): ((&[f32], &mut [f32]), &mut [u32])| self.forward_sample(a, b, w);
        if y.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
            x.par_chunks(xs)
                .zip(y.par_chunks_mut(ys))
                .zip(winners.par_chunks_mut(ys))
                .for_each(run);
        } else {
            x.chunks(xs)
                .zip(y.chunks_mut(ys))
                .zip(winners.chunks_mut(ys))
                .for_each(run);
        }
        self.winners = winners;
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
        let (xs, ys) = self.sizes();
        let dy: &[f32] = dy;
        let run = |(s, d): (usize, &mut [f32])| {
            self.backward_sample(&self.winners[s * ys..][..ys], &dy[s * ys..][..ys], d)
        };
        if dx.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
            dx.par_chunks_mut(xs).enumerate().for_each(run);
        } else {
            dx.chunks_mut(xs).enumerate().for_each(run);
        }
    }
}
