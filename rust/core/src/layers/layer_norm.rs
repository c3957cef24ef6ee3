//! LayerNormalization: each sample is normalised over its trailing axes (by
//! default the last) with its own mean and biased variance, then scaled by
//! gamma and shifted by beta, both shaped like the normalised axes.

use super::{field, init_field, sample_axis, Ctx, Layer, Param};
use crate::error::{Error, Result};
use crate::parallel::PARALLEL_THRESHOLD;
use crate::regularizer::Regularizer;
use crate::rng::Key;
use rayon::prelude::*;
use serde_json::Value;

/// One sample's (x, xhat, y) and its 1/std, as the forward pass zips them.
type ForwardRow<'a> = (((&'a [f32], &'a mut [f32]), &'a mut [f32]), &'a mut f32);
/// One sample's (dy, xhat, dx) and its 1/std, as the backward pass zips them.
type BackwardRow<'a> = (((&'a [f32], &'a [f32]), &'a mut [f32]), &'a f32);

pub struct LayerNorm {
    output_shape: Vec<usize>,
    /// Values normalised together (the product of the normalised axes).
    group: usize,
    epsilon: f32,
    params: Vec<Param>,
    gamma: Option<usize>,
    beta: Option<usize>,
    xhat: Vec<f32>,
    inv_std: Vec<f32>,
}

impl LayerNorm {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        // `axis` is an int or a list; the axes must be the trailing ones.
        let axes: Vec<usize> = match field(config, "axis") {
            Value::Array(list) => list
                .iter()
                .map(|a| sample_axis(name, a, input_shape))
                .collect::<Result<_>>()?,
            other => vec![sample_axis(name, other, input_shape)?],
        };
        let mut sorted = axes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let first = sorted[0];
        if sorted.len() != axes.len() || sorted != (first..input_shape.len()).collect::<Vec<_>>() {
            return Err(Error(format!(
                "{name}: 'axis' must name the trailing axes of the input (e.g. -1 or [-2, -1]), \
                 got {} for input shape {input_shape:?}",
                field(config, "axis")
            )));
        }
        let epsilon = field(config, "epsilon").as_f64().unwrap_or(1e-3);
        if epsilon.is_nan() || epsilon <= 0.0 {
            return Err(Error(format!(
                "{name}: 'epsilon' must be positive, got {epsilon}"
            )));
        }
        let shape = &input_shape[first..];
        let flag = |k: &str| field(config, k).as_bool().unwrap_or(true);
        let mut params = Vec::new();
        let mut gamma = None;
        let mut beta = None;
        if flag("scale") {
            gamma = Some(params.len());
            params.push(Param::new(
                "gamma",
                shape,
                &init_field(config, "gamma_initializer", "ones")?,
                key.fold(0),
                Regularizer::from_spec(field(config, "gamma_regularizer"))?,
            )?);
        }
        if flag("center") {
            beta = Some(params.len());
            params.push(Param::new(
                "beta",
                shape,
                &init_field(config, "beta_initializer", "zeros")?,
                key.fold(1),
                Regularizer::from_spec(field(config, "beta_regularizer"))?,
            )?);
        }
        Ok(LayerNorm {
            output_shape: input_shape.to_vec(),
            group: shape.iter().product(),
            epsilon: epsilon as f32,
            params,
            gamma,
            beta,
            xhat: Vec::new(),
            inv_std: Vec::new(),
        })
    }

    fn values(&self, index: Option<usize>, default: f32) -> Vec<f32> {
        index.map_or_else(
            || vec![default; self.group],
            |i| self.params[i].value_slice().to_vec(),
        )
    }
}

impl Layer for LayerNorm {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx) {
        let n = self.group;
        let groups = x.len() / n;
        let (gamma, beta) = (self.values(self.gamma, 1.0), self.values(self.beta, 0.0));
        self.xhat.resize(x.len(), 0.0);
        self.inv_std.resize(groups, 0.0);
        let eps = self.epsilon as f64;
        let row = |(((xr, hr), yr), s): ForwardRow| {
            let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            *s = (1.0 / (var + eps).sqrt()) as f32;
            let m = mean as f32;
            for (i, ((&xv, h), yv)) in xr.iter().zip(hr.iter_mut()).zip(yr.iter_mut()).enumerate() {
                *h = (xv - m) * *s;
                *yv = *h * gamma[i] + beta[i];
            }
        };
        if x.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
            x.par_chunks_exact(n)
                .zip(self.xhat.par_chunks_exact_mut(n))
                .zip(y.par_chunks_exact_mut(n))
                .zip(self.inv_std.par_iter_mut())
                .for_each(row);
        } else {
            x.chunks_exact(n)
                .zip(self.xhat.chunks_exact_mut(n))
                .zip(y.chunks_exact_mut(n))
                .zip(self.inv_std.iter_mut())
                .for_each(row);
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
        let n = self.group;
        // Parameter gradients: sums over the groups in order (deterministic).
        let (mut dgamma, mut dbeta) = (vec![0.0f64; n], vec![0.0f64; n]);
        for (dr, hr) in dy.chunks_exact(n).zip(self.xhat.chunks_exact(n)) {
            for (i, (&d, &h)) in dr.iter().zip(hr).enumerate() {
                dgamma[i] += d as f64 * h as f64;
                dbeta[i] += d as f64;
            }
        }
        for (index, sums) in [(self.gamma, &dgamma), (self.beta, &dbeta)] {
            if let Some(i) = index {
                for (g, &v) in self.params[i].grad_slice_mut().iter_mut().zip(sums) {
                    *g = v as f32;
                }
            }
        }
        let Some(dx) = dx else { return };
        let gamma = self.values(self.gamma, 1.0);
        // With g = dy·γ: dx = s·(g − mean(g) − xhat·mean(g·xhat)).
        let row = |(((dr, hr), out), &s): BackwardRow| {
            let (mut mg, mut mgh) = (0.0f64, 0.0f64);
            for ((&d, &h), &g) in dr.iter().zip(hr).zip(&gamma) {
                let g = (d * g) as f64;
                mg += g;
                mgh += g * h as f64;
            }
            let (mg, mgh) = ((mg / n as f64) as f32, (mgh / n as f64) as f32);
            for (((o, &d), &h), &g) in out.iter_mut().zip(dr).zip(hr).zip(&gamma) {
                *o = s * (d * g - mg - h * mgh);
            }
        };
        let dy: &[f32] = dy;
        if dx.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
            dy.par_chunks_exact(n)
                .zip(self.xhat.par_chunks_exact(n))
                .zip(dx.par_chunks_exact_mut(n))
                .zip(self.inv_std.par_iter())
                .for_each(row);
        } else {
            dy.chunks_exact(n)
                .zip(self.xhat.chunks_exact(n))
                .zip(dx.chunks_exact_mut(n))
                .zip(self.inv_std.iter())
                .for_each(row);
        }
    }
}
