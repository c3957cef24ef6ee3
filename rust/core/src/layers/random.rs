//! `Random`: values drawn anew at every batch inside a traced graph (what
//! `ferrax.random.normal` and friends give in a custom layer's `call`, such as a
//! VAE's sampling layer). It reads no input; with a batch axis its result has one
//! row of draws per sample. Element i's draw depends only on the layer's key for
//! this batch, its seed and i: the same values for any thread count.

use super::{field, Ctx, Layer};
use crate::error::{Error, Result};
use crate::init::truncated_normal;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Distribution {
    Normal { mean: f64, stddev: f64 },
    TruncatedNormal { mean: f64, stddev: f64 },
    Uniform { low: f64, high: f64 },
}

pub struct Random {
    distribution: Distribution,
    shape: Vec<usize>,
    batched: bool,
    seed: u64,
}

impl Random {
    /// From `{"distribution": "normal" | "truncated_normal" | "uniform", "mean",
    /// "stddev", "minval", "maxval", "shape": [...], "batched": bool, "seed": int}`.
    pub fn build(name: &str, config: &Value) -> Result<Self> {
        let num = |key: &str, default: f64| -> Result<f64> {
            match field(config, key) {
                Value::Null => Ok(default),
                v => v
                    .as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| Error(format!("{name}: '{key}' must be a finite number"))),
            }
        };
        let distribution = match field(config, "distribution").as_str() {
            Some("normal") => Distribution::Normal {
                mean: num("mean", 0.0)?,
                stddev: num("stddev", 1.0)?,
            },
            Some("truncated_normal") => Distribution::TruncatedNormal {
                mean: num("mean", 0.0)?,
                stddev: num("stddev", 1.0)?,
            },
            Some("uniform") => Distribution::Uniform {
                low: num("minval", 0.0)?,
                high: num("maxval", 1.0)?,
            },
            other => {
                return Err(Error(format!(
                    "{name}: 'distribution' must be 'normal', 'truncated_normal' or \
                     'uniform', got {other:?}"
                )))
            }
        };
        let shape = field(config, "shape")
            .as_array()
            .and_then(|d| d.iter().map(|v| v.as_u64().map(|v| v as usize)).collect())
            .filter(|d: &Vec<usize>| d.len() <= crate::ops::MAX_RANK)
            .ok_or_else(|| Error(format!("{name}: 'shape' must be a list of sizes")))?;
        Ok(Random {
            distribution,
            shape,
            batched: field(config, "batched").as_bool().unwrap_or(true),
            seed: field(config, "seed").as_u64().unwrap_or(0),
        })
    }
}

impl Layer for Random {
    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn output_batched(&self) -> bool {
        self.batched
    }

    fn forward(&mut self, _x: &[f32], y: &mut [f32], _rows: usize, ctx: &Ctx<'_>) {
        let key = ctx.key.fold(self.seed);
        for (i, v) in y.iter_mut().enumerate() {
            let c = i as u64;
            *v = match self.distribution {
                Distribution::Normal { mean, stddev } => mean + stddev * key.normal_f64(c),
                Distribution::TruncatedNormal { mean, stddev } => {
                    mean + stddev * truncated_normal(key, i)
                }
                Distribution::Uniform { low, high } => low + (high - low) * key.uniform_f64(c),
            } as f32;
        }
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        _dy: &mut [f32],
        _dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Key;
    use serde_json::json;

    fn draw(config: Value, n: usize, key: u64) -> Vec<f32> {
        let mut layer = Random::build("random", &config).expect("builds");
        let mut y = vec![0.0f32; n];
        let mut ctx = Ctx::for_tests(true);
        ctx.key = Key::new(key);
        layer.forward(&[], &mut y, n, &ctx);
        y
    }

    #[test]
    fn draws_follow_the_distribution_and_change_with_the_key() {
        let normal = json!({"distribution": "normal", "mean": 2.0, "stddev": 3.0, "shape": [1]});
        let a = draw(normal.clone(), 20000, 1);
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(
            (mean - 2.0).abs() < 0.1 && (var.sqrt() - 3.0).abs() < 0.1,
            "{mean} {var}"
        );
        assert_eq!(a, draw(normal.clone(), 20000, 1));
        assert_ne!(a, draw(normal, 20000, 2));
        let u = draw(
            json!({"distribution": "uniform", "minval": -1.0, "maxval": 0.5, "shape": [1]}),
            5000,
            3,
        );
        assert!(u.iter().all(|&v| (-1.0..0.5).contains(&v)));
        let t = draw(
            json!({"distribution": "truncated_normal", "stddev": 1.0, "shape": [1]}),
            5000,
            4,
        );
        assert!(t.iter().all(|&v| v.abs() <= 2.0));
    }

    #[test]
    fn unknown_distributions_are_refused() {
        let e = Random::build("r", &json!({"distribution": "cauchy", "shape": [1]}))
            .err()
            .expect("refused");
        assert!(e.0.contains("'distribution' must be"), "{}", e.0);
    }
}
