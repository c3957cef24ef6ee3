//! MaxPooling2D and AveragePooling2D (channels last). With "same" padding the
//! padded positions take no part: they never win a max and are not counted in
//! an average, as in TensorFlow.

use super::window::{image_shape, padding, pair, sequence_shape, Axis, Padding};
use super::{field, Ctx, Layer, PoolWindow};
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

    fn forward_sample(&self, x: &[f32], y: &mut [f32]) {
        let c = self.channels;
        match self.kind {
            PoolKind::Max => {
                y.fill(f32::NEG_INFINITY);
                self.windows(|o, i| {
                    // A branch-free max over contiguous channels: it vectorises.
                    for (yv, &xv) in y[o * c..][..c].iter_mut().zip(&x[i * c..][..c]) {
                        *yv = if xv > *yv { xv } else { *yv };
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

    /// For max pooling the winner of each window is found again from x and y:
    /// the first input equal to the window's max, as TensorFlow picks it. This
    /// keeps forward a pure, vectorised max with no index bookkeeping.
    fn backward_sample(
        &self,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        taken: &mut [bool],
    ) {
        let c = self.channels;
        dx.fill(0.0);
        match self.kind {
            PoolKind::Max => {
                let mut current = usize::MAX;
                self.windows(|o, i| {
                    if o != current {
                        current = o;
                        taken.fill(false);
                    }
                    let (yo, go) = (&y[o * c..][..c], &dy[o * c..][..c]);
                    for ((((d, &xv), &yv), &g), t) in dx[i * c..][..c]
                        .iter_mut()
                        .zip(&x[i * c..][..c])
                        .zip(yo)
                        .zip(go)
                        .zip(taken.iter_mut())
                    {
                        let hit = !*t & (xv == yv);
                        *d += if hit { g } else { 0.0 };
                        *t |= hit;
                    }
                });
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

    fn tiling_max_pool(&self) -> Option<PoolWindow> {
        // ("same" padding may still pad after the last window: then it does not tile.)
        let tiles = |a: &Axis| {
            a.stride == a.kernel && a.dilation == 1 && a.pad == 0 && a.output * a.kernel <= a.input
        };
        (self.kind == PoolKind::Max && tiles(&self.rows) && tiles(&self.cols)).then_some(
            PoolWindow {
                rows: self.rows.kernel,
                cols: self.cols.kernel,
            },
        )
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx) {
        let (xs, ys) = self.sizes();
        let run = |(a, b): (&[f32], &mut [f32])| self.forward_sample(a, b);
        if y.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
            x.par_chunks(xs).zip(y.par_chunks_mut(ys)).for_each(run);
        } else {
            x.chunks(xs).zip(y.chunks_mut(ys)).for_each(run);
        }
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        let Some(dx) = dx else { return };
        let (xs, ys) = self.sizes();
        let dy: &[f32] = dy;
        let c = self.channels;
        // One `taken` scratch per task, not one per sample.
        let run = |taken: &mut Vec<bool>, (s, d): (usize, &mut [f32])| {
            let (xs_, ys_) = (&x[s * xs..][..xs], &y[s * ys..][..ys]);
            self.backward_sample(xs_, ys_, &dy[s * ys..][..ys], d, taken)
        };
        if dx.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
            dx.par_chunks_mut(xs)
                .enumerate()
                .for_each_init(|| vec![false; c], run);
        } else {
            let mut taken = vec![false; c];
            dx.chunks_mut(xs)
                .enumerate()
                .for_each(|item| run(&mut taken, item));
        }
    }
}
