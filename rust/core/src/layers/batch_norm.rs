//! BatchNormalization over one axis (the channels): in training, normalise with
//! the batch's mean and biased variance and move the moving statistics towards
//! them; at inference, normalise with the moving statistics. Weights in Keras's
//! order: gamma, beta (trainable), moving_mean, moving_variance (not trainable).

use super::{field, init_field, sample_axis, Ctx, Layer, Param};
use crate::error::{Error, Result};
use crate::parallel::PARALLEL_THRESHOLD;
use crate::regularizer::Regularizer;
use crate::rng::Key;
use rayon::prelude::*;
use serde_json::Value;

pub struct BatchNorm {
    output_shape: Vec<usize>,
    channels: usize,
    /// Elements after the axis in a sample: a channel's values come in runs of this length.
    inner: usize,
    momentum: f64,
    epsilon: f64,
    params: Vec<Param>,
    gamma: Option<usize>,
    beta: Option<usize>,
    moving_mean: usize,
    moving_var: usize,
    /// Normalised input and 1/sqrt(var + eps) per channel of the last forward.
    xhat: Vec<f32>,
    inv_std: Vec<f32>,
    /// Whether the last forward used the batch's statistics (so backward
    /// differentiates through them).
    batch_stats: bool,
}

impl BatchNorm {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let axis = sample_axis(name, field(config, "axis"), input_shape)?;
        let channels = input_shape[axis];
        let inner = input_shape[axis + 1..].iter().product();
        let number = |k: &str, default: f64| match field(config, k) {
            Value::Null => Ok(default),
            v => v
                .as_f64()
                .ok_or_else(|| Error(format!("{name}: '{k}' must be a number, got {v}"))),
        };
        let momentum = number("momentum", 0.99)?;
        let epsilon = number("epsilon", 1e-3)?;
        if epsilon.is_nan() || epsilon <= 0.0 {
            return Err(Error(format!(
                "{name}: 'epsilon' must be positive, got {epsilon}"
            )));
        }
        let flag = |k: &str| field(config, k).as_bool().unwrap_or(true);
        let mut params = Vec::new();
        let mut add = |p: Param| {
            params.push(p);
            params.len() - 1
        };
        let shape = [channels];
        let gamma = if flag("scale") {
            Some(add(Param::new(
                "gamma",
                &shape,
                &init_field(config, "gamma_initializer", "ones")?,
                key.fold(0),
                Regularizer::from_spec(field(config, "gamma_regularizer"))?,
            )?))
        } else {
            None
        };
        let beta = if flag("center") {
            Some(add(Param::new(
                "beta",
                &shape,
                &init_field(config, "beta_initializer", "zeros")?,
                key.fold(1),
                Regularizer::from_spec(field(config, "beta_regularizer"))?,
            )?))
        } else {
            None
        };
        let moving_mean = add(Param::new(
            "moving_mean",
            &shape,
            &init_field(config, "moving_mean_initializer", "zeros")?,
            key.fold(2),
            None,
        )?
        .non_trainable());
        let moving_var = add(Param::new(
            "moving_variance",
            &shape,
            &init_field(config, "moving_variance_initializer", "ones")?,
            key.fold(3),
            None,
        )?
        .non_trainable());
        Ok(BatchNorm {
            output_shape: input_shape.to_vec(),
            channels,
            inner,
            momentum,
            epsilon,
            params,
            gamma,
            beta,
            moving_mean,
            moving_var,
            xhat: Vec::new(),
            inv_std: Vec::new(),
            batch_stats: false,
        })
    }

    /// Values per outer row: one block of (channels × inner). Every pass below
    /// walks the data row by row against per-position vectors of this width, so
    /// the inner loops are plain zips (no index arithmetic) and vectorise.
    fn width(&self) -> usize {
        self.channels * self.inner
    }

    /// A per-channel vector repeated for every position of a row.
    fn expand(&self, per_channel: &[f32]) -> Vec<f32> {
        per_channel
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, self.inner))
            .collect()
    }

    /// Per-position sums of row-wise products collapsed to per-channel sums.
    fn to_channels(&self, per_position: &[f64]) -> Vec<f64> {
        per_position
            .chunks_exact(self.inner)
            .map(|run| run.iter().sum())
            .collect()
    }

    /// Per-channel mean and biased variance of `x` (two passes in f64).
    fn moments(&self, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let w = self.width();
        let count = (x.len() / self.channels) as f64;
        let sums = row_sums(x, w, |acc, row| {
            acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64)
        });
        let mean: Vec<f64> = self.to_channels(&sums).iter().map(|s| s / count).collect();
        let mean_e = self.expand(&mean.iter().map(|&m| m as f32).collect::<Vec<_>>());
        let squares = row_sums(x, w, |acc, row| {
            for ((a, &v), &m) in acc.iter_mut().zip(row).zip(&mean_e) {
                let d = (v - m) as f64;
                *a += d * d;
            }
        });
        // The mean was rounded to f32 above: correct the variance for it exactly.
        let shift: Vec<f64> = mean.iter().map(|&m| m - m as f32 as f64).collect();
        let var = self
            .to_channels(&squares)
            .iter()
            .zip(&shift)
            .map(|(s, d)| (s / count - d * d).max(0.0))
            .collect();
        (mean, var)
    }

    fn per_channel(&self, index: Option<usize>, default: f32) -> Vec<f32> {
        index.map_or_else(
            || vec![default; self.channels],
            |i| self.params[i].value_slice().to_vec(),
        )
    }
}

/// Rows (of `width` values) per block of the reductions: fixed, so the sums are
/// added in the same order whatever the number of threads.
const BLOCK_ROWS: usize = 64;

/// Σ over rows of `add(acc, row)` into a per-position f64 vector: partial sums
/// of fixed blocks of rows (in parallel when big), then added in block order.
fn row_sums(data: &[f32], width: usize, add: impl Fn(&mut [f64], &[f32]) + Sync) -> Vec<f64> {
    let block = |b: &[f32]| {
        let mut acc = vec![0.0f64; width];
        b.chunks_exact(width).for_each(|row| add(&mut acc, row));
        acc
    };
    let partials: Vec<Vec<f64>> = if data.len() >= PARALLEL_THRESHOLD {
        data.par_chunks(BLOCK_ROWS * width).map(block).collect()
    } else {
        data.chunks(BLOCK_ROWS * width).map(block).collect()
    };
    let mut total = vec![0.0f64; width];
    for p in &partials {
        total.iter_mut().zip(p).for_each(|(t, &v)| *t += v);
    }
    total
}

/// Applies `f(in_row_a, in_row_b, out_row)` to matching rows, in parallel when big.
fn map_rows(
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    width: usize,
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync + Send,
) {
    if out.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
        a.par_chunks_exact(width)
            .zip(b.par_chunks_exact(width))
            .zip(out.par_chunks_exact_mut(width))
            .for_each(|((ra, rb), ro)| f(ra, rb, ro));
    } else {
        a.chunks_exact(width)
            .zip(b.chunks_exact(width))
            .zip(out.chunks_exact_mut(width))
            .for_each(|((ra, rb), ro)| f(ra, rb, ro));
    }
}

impl Layer for BatchNorm {
    fn inference_when_frozen(&self) -> bool {
        true
    }

    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, ctx: &Ctx) {
        let eps = self.epsilon;
        self.batch_stats = ctx.training;
        let mean: Vec<f64> = if ctx.training {
            let (mean, var) = self.moments(x);
            let m = self.momentum;
            let moving = self.params[self.moving_mean].value_slice_mut();
            for (mv, &b) in moving.iter_mut().zip(&mean) {
                *mv = (*mv as f64 * m + b * (1.0 - m)) as f32;
            }
            let moving = self.params[self.moving_var].value_slice_mut();
            for (mv, &b) in moving.iter_mut().zip(&var) {
                *mv = (*mv as f64 * m + b * (1.0 - m)) as f32;
            }
            self.inv_std = var
                .iter()
                .map(|&v| (1.0 / (v + eps).sqrt()) as f32)
                .collect();
            mean
        } else {
            let var = self.params[self.moving_var].value_slice();
            self.inv_std = var
                .iter()
                .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
                .collect();
            let moving = self.params[self.moving_mean].value_slice();
            moving.iter().map(|&v| v as f64).collect()
        };
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let (mean_e, inv_e) = (self.expand(&mean), self.expand(&self.inv_std));
        let gamma_e = self.expand(&self.per_channel(self.gamma, 1.0));
        let beta_e = self.expand(&self.per_channel(self.beta, 0.0));
        let w = self.width();
        let mut xhat = std::mem::take(&mut self.xhat);
        xhat.resize(x.len(), 0.0);
        map_rows(x, x, &mut xhat, w, |xr, _, hr| {
            for (((h, &v), &m), &s) in hr.iter_mut().zip(xr).zip(&mean_e).zip(&inv_e) {
                *h = (v - m) * s;
            }
        });
        map_rows(&xhat, &xhat, y, w, |hr, _, yr| {
            for (((o, &h), &g), &b) in yr.iter_mut().zip(hr).zip(&gamma_e).zip(&beta_e) {
                *o = g * h + b;
            }
        });
        self.xhat = xhat;
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        let (c, w) = (self.channels, self.width());
        // dbeta = Σ dy, dgamma = Σ dy·xhat per channel.
        let dbeta = self.to_channels(&row_sums(dy, w, |acc, row| {
            acc.iter_mut().zip(row).for_each(|(a, &d)| *a += d as f64)
        }));
        let pairs: Vec<f32> = {
            // dy·xhat, row by row, for the dgamma sums
            let mut p = vec![0.0f32; dy.len()];
            map_rows(dy, &self.xhat, &mut p, w, |dr, hr, pr| {
                for ((o, &d), &h) in pr.iter_mut().zip(dr).zip(hr) {
                    *o = d * h;
                }
            });
            p
        };
        let dgamma = self.to_channels(&row_sums(&pairs, w, |acc, row| {
            acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64)
        }));
        for (index, sums) in [(self.gamma, &dgamma), (self.beta, &dbeta)] {
            if let Some(i) = index {
                for (p, &v) in self.params[i].grad_slice_mut().iter_mut().zip(sums) {
                    *p = v as f32;
                }
            }
        }
        let Some(dx) = dx else { return };
        let gamma = self.per_channel(self.gamma, 1.0);
        let count = (dy.len() / c) as f64;
        // With batch statistics, the mean and variance depend on x too:
        // dx = γ·s·(dy − mean(dy) − xhat·mean(dy·xhat)); otherwise dx = γ·s·dy.
        let (shift, slope): (Vec<f32>, Vec<f32>) = if self.batch_stats {
            (
                dbeta.iter().map(|&v| (v / count) as f32).collect(),
                dgamma.iter().map(|&v| (v / count) as f32).collect(),
            )
        } else {
            (vec![0.0; c], vec![0.0; c])
        };
        let scale: Vec<f32> = gamma
            .iter()
            .zip(&self.inv_std)
            .map(|(g, s)| g * s)
            .collect();
        let (scale_e, shift_e, slope_e) = (
            self.expand(&scale),
            self.expand(&shift),
            self.expand(&slope),
        );
        map_rows(dy, &self.xhat, dx, w, |dr, hr, xr| {
            for (((((o, &d), &h), &k), &a), &b) in xr
                .iter_mut()
                .zip(dr)
                .zip(hr)
                .zip(&scale_e)
                .zip(&shift_e)
                .zip(&slope_e)
            {
                *o = k * (d - a - h * b);
            }
        });
    }
}
