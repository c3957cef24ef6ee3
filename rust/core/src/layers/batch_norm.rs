//! BatchNormalization over one axis (the channels): in training, normalise with
//! the batch's mean and biased variance and move the moving statistics towards
//! them; at inference, normalise with the moving statistics. Weights in Keras's
//! order: gamma, beta (trainable), moving_mean, moving_variance (not trainable).

use super::{field, init_field, sample_axis, Ctx, Layer, Param};
use crate::error::{Error, Result};
use crate::regularizer::Regularizer;
use crate::rng::Key;
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
            )))
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
            )))
        } else {
            None
        };
        let moving_mean = add(Param::new(
            "moving_mean",
            &shape,
            &init_field(config, "moving_mean_initializer", "zeros")?,
            key.fold(2),
            None,
        )
        .non_trainable());
        let moving_var = add(Param::new(
            "moving_variance",
            &shape,
            &init_field(config, "moving_variance_initializer", "ones")?,
            key.fold(3),
            None,
        )
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

    /// Calls `f(channel, run)` for every run of one channel's values, in memory order.
    fn runs<'a>(&self, data: &'a [f32], mut f: impl FnMut(usize, &'a [f32])) {
        for (i, run) in data.chunks_exact(self.inner).enumerate() {
            f(i % self.channels, run);
        }
    }

    /// Per-channel mean and biased variance of `x` (two passes in f64, serial:
    /// the same sums whatever the thread count).
    fn moments(&self, x: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let c = self.channels;
        let count = (x.len() / c) as f64;
        let mut mean = vec![0.0f64; c];
        self.runs(x, |ch, run| {
            mean[ch] += run.iter().map(|&v| v as f64).sum::<f64>();
        });
        mean.iter_mut().for_each(|m| *m /= count);
        let mut var = vec![0.0f64; c];
        self.runs(x, |ch, run| {
            let m = mean[ch];
            var[ch] += run.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>();
        });
        var.iter_mut().for_each(|v| *v /= count);
        (mean, var)
    }

    fn per_channel(&self, index: Option<usize>, default: f32) -> Vec<f32> {
        index.map_or_else(
            || vec![default; self.channels],
            |i| self.params[i].value_slice().to_vec(),
        )
    }
}

impl Layer for BatchNorm {
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
        let gamma = self.per_channel(self.gamma, 1.0);
        let beta = self.per_channel(self.beta, 0.0);
        self.xhat.resize(x.len(), 0.0);
        let (c, inner) = (self.channels, self.inner);
        for (i, ((xr, hr), yr)) in x
            .chunks_exact(inner)
            .zip(self.xhat.chunks_exact_mut(inner))
            .zip(y.chunks_exact_mut(inner))
            .enumerate()
        {
            let ch = i % c;
            let (m, s, g, b) = (mean[ch], self.inv_std[ch], gamma[ch], beta[ch]);
            for ((&xv, h), yv) in xr.iter().zip(hr.iter_mut()).zip(yr.iter_mut()) {
                *h = (xv - m) * s;
                *yv = g * *h + b;
            }
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
        let c = self.channels;
        // dbeta = Σ dy, dgamma = Σ dy·xhat per channel.
        let (mut dbeta, mut dgamma) = (vec![0.0f64; c], vec![0.0f64; c]);
        for (i, (dr, hr)) in dy
            .chunks_exact(self.inner)
            .zip(self.xhat.chunks_exact(self.inner))
            .enumerate()
        {
            let ch = i % c;
            for (&d, &h) in dr.iter().zip(hr) {
                dbeta[ch] += d as f64;
                dgamma[ch] += d as f64 * h as f64;
            }
        }
        if let Some(g) = self.gamma {
            for (p, &v) in self.params[g].grad_slice_mut().iter_mut().zip(&dgamma) {
                *p = v as f32;
            }
        }
        if let Some(b) = self.beta {
            for (p, &v) in self.params[b].grad_slice_mut().iter_mut().zip(&dbeta) {
                *p = v as f32;
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
        for (i, ((dr, hr), xr)) in dy
            .chunks_exact(self.inner)
            .zip(self.xhat.chunks_exact(self.inner))
            .zip(dx.chunks_exact_mut(self.inner))
            .enumerate()
        {
            let ch = i % c;
            let scale = gamma[ch] * self.inv_std[ch];
            let (a, b) = (shift[ch], slope[ch]);
            for ((&d, &h), o) in dr.iter().zip(hr).zip(xr.iter_mut()) {
                *o = scale * (d - a - h * b);
            }
        }
    }
}
