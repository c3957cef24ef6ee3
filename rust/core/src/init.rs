//! Weight initializers with Keras's names, defaults and fan rules.

use crate::error::{Error, Result};
use crate::rng::Key;
use serde_json::Value;

/// Truncated normals are cut at two standard deviations; this is the
/// standard deviation of a unit normal so truncated, used to rescale.
const TRUNCATED_STD: f64 = 0.879_625_661_034_239_8;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Uniform,
    TruncatedNormal,
    Normal,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FanMode {
    In,
    Out,
    Avg,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Initializer {
    Zeros,
    Ones,
    Constant(f32),
    RandomNormal {
        mean: f64,
        stddev: f64,
    },
    RandomUniform {
        minval: f64,
        maxval: f64,
    },
    TruncatedNormal {
        mean: f64,
        stddev: f64,
    },
    VarianceScaling {
        scale: f64,
        mode: FanMode,
        distribution: Distribution,
    },
    Orthogonal {
        gain: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct InitSpec {
    pub init: Initializer,
    /// An explicit seed makes the draw independent of the model's seed (as in Keras).
    pub seed: Option<u64>,
}

fn arg(v: &Value, key: &str, default: f64) -> Result<f64> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x.as_f64().ok_or_else(|| {
            Error(format!(
                "initializer argument '{key}' must be a number, got {x}"
            ))
        }),
    }
}

impl InitSpec {
    /// From `"glorot_uniform"` or `{"name": "random_normal", "stddev": 0.1, "seed": 3}`.
    pub fn from_spec(spec: &Value) -> Result<Self> {
        let (name, a) = crate::error::split_spec(spec, "initializer")?;
        let vs = |scale, mode, distribution| Initializer::VarianceScaling {
            scale,
            mode,
            distribution,
        };
        let init = match name {
            "zeros" => Initializer::Zeros,
            "ones" => Initializer::Ones,
            "constant" => Initializer::Constant(arg(a, "value", 0.0)? as f32),
            "random_normal" => Initializer::RandomNormal {
                mean: arg(a, "mean", 0.0)?,
                stddev: arg(a, "stddev", 0.05)?,
            },
            "random_uniform" => Initializer::RandomUniform {
                minval: arg(a, "minval", -0.05)?,
                maxval: arg(a, "maxval", 0.05)?,
            },
            "truncated_normal" => Initializer::TruncatedNormal {
                mean: arg(a, "mean", 0.0)?,
                stddev: arg(a, "stddev", 0.05)?,
            },
            "glorot_uniform" => vs(1.0, FanMode::Avg, Distribution::Uniform),
            "glorot_normal" => vs(1.0, FanMode::Avg, Distribution::TruncatedNormal),
            "he_uniform" => vs(2.0, FanMode::In, Distribution::Uniform),
            "he_normal" => vs(2.0, FanMode::In, Distribution::TruncatedNormal),
            "lecun_uniform" => vs(1.0, FanMode::In, Distribution::Uniform),
            "lecun_normal" => vs(1.0, FanMode::In, Distribution::TruncatedNormal),
            "variance_scaling" => {
                let mode = match a.get("mode").and_then(Value::as_str).unwrap_or("fan_in") {
                    "fan_in" => FanMode::In,
                    "fan_out" => FanMode::Out,
                    "fan_avg" => FanMode::Avg,
                    m => return Err(Error(format!("variance_scaling: unknown mode '{m}'"))),
                };
                let distribution = match a
                    .get("distribution")
                    .and_then(Value::as_str)
                    .unwrap_or("truncated_normal")
                {
                    "uniform" => Distribution::Uniform,
                    "truncated_normal" => Distribution::TruncatedNormal,
                    "untruncated_normal" | "normal" => Distribution::Normal,
                    d => {
                        return Err(Error(format!(
                            "variance_scaling: unknown distribution '{d}'"
                        )))
                    }
                };
                vs(arg(a, "scale", 1.0)?, mode, distribution)
            }
            "orthogonal" => Initializer::Orthogonal {
                gain: arg(a, "gain", 1.0)?,
            },
            other => return Err(Error(format!("unknown initializer '{other}'"))),
        };
        let seed = a.get("seed").and_then(Value::as_u64);
        Ok(InitSpec { init, seed })
    }

    /// Values for a parameter of `shape`; `key` is the model's key for this parameter.
    /// An error, before anything is allocated, when the values would not fit in memory.
    pub fn sample(&self, shape: &[usize], key: Key) -> Result<Vec<f32>> {
        let key = self.seed.map_or(key, |s| Key::new(s).fold(0x1417));
        let what = crate::sizing::current_layer().map_or_else(
            || "an initializer's tensor".to_string(),
            |l| format!("{l}: a weight"),
        );
        // (Orthogonal works on an f64 copy: twice the bytes again)
        let copies = if matches!(self.init, Initializer::Orthogonal { .. }) {
            3
        } else {
            1
        };
        let n = crate::sizing::tensor(&what, shape, copies, 0)?;
        Ok(match self.init {
            Initializer::Zeros => vec![0.0; n],
            Initializer::Ones => vec![1.0; n],
            Initializer::Constant(c) => vec![c; n],
            Initializer::RandomNormal { mean, stddev } => (0..n)
                .map(|i| (mean + stddev * key.normal_f64(i as u64)) as f32)
                .collect(),
            Initializer::RandomUniform { minval, maxval } => (0..n)
                .map(|i| (minval + (maxval - minval) * key.uniform_f64(i as u64)) as f32)
                .collect(),
            Initializer::TruncatedNormal { mean, stddev } => (0..n)
                .map(|i| (mean + stddev * truncated_normal(key, i)) as f32)
                .collect(),
            Initializer::VarianceScaling {
                scale,
                mode,
                distribution,
            } => {
                let (fan_in, fan_out) = fans(shape);
                let fan = match mode {
                    FanMode::In => fan_in,
                    FanMode::Out => fan_out,
                    FanMode::Avg => (fan_in + fan_out) / 2.0,
                };
                let variance = scale / fan.max(1.0);
                match distribution {
                    Distribution::Uniform => {
                        let limit = (3.0 * variance).sqrt();
                        (0..n)
                            .map(|i| (limit * (2.0 * key.uniform_f64(i as u64) - 1.0)) as f32)
                            .collect()
                    }
                    Distribution::TruncatedNormal => {
                        let std = variance.sqrt() / TRUNCATED_STD;
                        (0..n)
                            .map(|i| (std * truncated_normal(key, i)) as f32)
                            .collect()
                    }
                    Distribution::Normal => {
                        let std = variance.sqrt();
                        (0..n)
                            .map(|i| (std * key.normal_f64(i as u64)) as f32)
                            .collect()
                    }
                }
            }
            Initializer::Orthogonal { gain } => orthogonal(shape, gain, key),
        })
    }
}

/// Keras's fan rule: the last axis is fan-out, the one before fan-in, and any
/// leading axes (a convolution's window) multiply both.
pub fn fans(shape: &[usize]) -> (f64, f64) {
    match shape.len() {
        0 => (1.0, 1.0),
        1 => (shape[0] as f64, shape[0] as f64),
        r => {
            let receptive: usize = shape[..r - 2].iter().product();
            (
                (shape[r - 2] * receptive) as f64,
                (shape[r - 1] * receptive) as f64,
            )
        }
    }
}

/// A unit normal redrawn until it lies within two standard deviations.
pub(crate) fn truncated_normal(key: Key, i: usize) -> f64 {
    let k = key.fold(i as u64);
    for attempt in 0..64 {
        let z = k.normal_f64(attempt);
        if z.abs() <= 2.0 {
            return z;
        }
    }
    0.0
}

/// A (semi-)orthogonal matrix from the QR decomposition of a normal matrix:
/// rows = product of all axes but the last, columns = the last axis.
fn orthogonal(shape: &[usize], gain: f64, key: Key) -> Vec<f32> {
    let n: usize = shape.iter().product();
    if n == 0 {
        return Vec::new();
    }
    let cols = *shape.last().unwrap_or(&1);
    let rows = n / cols;
    // Orthonormalise the columns of a tall matrix; transpose back if wide.
    let (tall_r, tall_c) = if rows >= cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let mut a: Vec<f64> = (0..tall_r * tall_c)
        .map(|i| key.normal_f64(i as u64))
        .collect();
    // Modified Gram-Schmidt on columns, twice for numerical orthogonality.
    for j in 0..tall_c {
        for _pass in 0..2 {
            for p in 0..j {
                let dot: f64 = (0..tall_r)
                    .map(|i| a[i * tall_c + p] * a[i * tall_c + j])
                    .sum();
                for i in 0..tall_r {
                    a[i * tall_c + j] -= dot * a[i * tall_c + p];
                }
            }
        }
        let norm: f64 = (0..tall_r)
            .map(|i| a[i * tall_c + j].powi(2))
            .sum::<f64>()
            .sqrt();
        let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        for i in 0..tall_r {
            a[i * tall_c + j] *= inv;
        }
    }
    let mut out = vec![0.0f32; n];
    for i in 0..rows {
        for j in 0..cols {
            let v = if rows >= cols {
                a[i * tall_c + j]
            } else {
                a[j * tall_c + i]
            };
            out[i * cols + j] = (gain * v) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthogonal_columns_are_orthonormal() {
        for shape in [[6usize, 4], [4, 6], [5, 5]] {
            let w = InitSpec::from_spec(&Value::String("orthogonal".into()))
                .unwrap()
                .sample(&shape, Key::new(1))
                .unwrap();
            let (r, c) = (shape[0], shape[1]);
            let small = r.min(c);
            for p in 0..small {
                for q in 0..small {
                    let dot: f64 = if r >= c {
                        (0..r)
                            .map(|i| w[i * c + p] as f64 * w[i * c + q] as f64)
                            .sum()
                    } else {
                        (0..c)
                            .map(|j| w[p * c + j] as f64 * w[q * c + j] as f64)
                            .sum()
                    };
                    let want = if p == q { 1.0 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-5, "{shape:?} {p} {q} {dot}");
                }
            }
        }
    }

    #[test]
    fn glorot_uniform_limit() {
        let w = InitSpec::from_spec(&Value::String("glorot_uniform".into()))
            .unwrap()
            .sample(&[784, 128], Key::new(2))
            .unwrap();
        let limit = (6.0f64 / (784.0 + 128.0)).sqrt() as f32;
        assert!(w.iter().all(|v| v.abs() <= limit));
        assert!(w.iter().any(|v| v.abs() > 0.9 * limit));
    }
}
