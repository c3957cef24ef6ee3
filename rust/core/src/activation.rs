//! Activation functions: forward, and backward as a vector-Jacobian product.
//!
//! Elementwise activations work on any layout; softmax and log_softmax act on
//! rows of `width` elements (the last axis).

use crate::error::{Error, Result};
use crate::fastmath;
use crate::parallel::{for_each_block, for_each_row};
use serde_json::Value;

const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Linear,
    Relu,
    LeakyRelu { negative_slope: f32 },
    Elu { alpha: f32 },
    Selu,
    Gelu { approximate: bool },
    Silu,
    Sigmoid,
    HardSigmoid,
    Tanh,
    Softplus,
    Softsign,
    Softmax,
    LogSoftmax,
}

fn number(v: &Value, key: &str, default: f32) -> Result<f32> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(x) => x.as_f64().map(|f| f as f32).ok_or_else(|| {
            Error(format!(
                "activation argument '{key}' must be a number, got {x}"
            ))
        }),
    }
}

impl Activation {
    /// From a spec: a name (`"relu"`) or an object (`{"name": "leaky_relu", "negative_slope": 0.1}`).
    pub fn from_spec(spec: &Value) -> Result<Self> {
        if spec.is_null() {
            return Ok(Activation::Linear);
        }
        let (name, args) = crate::error::split_spec(spec, "activation")?;
        Ok(match name {
            "linear" | "None" | "" => Activation::Linear,
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu {
                negative_slope: number(args, "negative_slope", 0.2)?,
            },
            "elu" => Activation::Elu {
                alpha: number(args, "alpha", 1.0)?,
            },
            "selu" => Activation::Selu,
            "gelu" => Activation::Gelu {
                approximate: args
                    .get("approximate")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            },
            "silu" | "swish" => Activation::Silu,
            "sigmoid" => Activation::Sigmoid,
            "hard_sigmoid" => Activation::HardSigmoid,
            "tanh" => Activation::Tanh,
            "softplus" => Activation::Softplus,
            "softsign" => Activation::Softsign,
            "softmax" => Activation::Softmax,
            "log_softmax" => Activation::LogSoftmax,
            other => return Err(Error(format!("unknown activation '{other}'"))),
        })
    }

    /// Whether the derivative can be computed from the output alone, so the
    /// forward pass may overwrite its input in place.
    pub fn backward_from_output(self) -> bool {
        matches!(
            self,
            Activation::Linear
                | Activation::Relu
                | Activation::Sigmoid
                | Activation::Tanh
                | Activation::HardSigmoid
                | Activation::Softmax
                | Activation::LogSoftmax
                | Activation::Elu { .. }
        ) || matches!(self, Activation::LeakyRelu { negative_slope } if negative_slope > 0.0)
    }

    /// y = f(x), with `width` the size of the last axis.
    pub fn forward(self, x: &[f32], y: &mut [f32], width: usize) {
        debug_assert_eq!(x.len(), y.len());
        match self {
            Activation::Softmax | Activation::LogSoftmax => {
                y.copy_from_slice(x);
                self.forward_in_place(y, width)
            }
            _ => {
                let f = self;
                // Blocks of y line up with blocks of x at the same offset.
                for_each_block(y, |off, out| {
                    let len = out.len();
                    for (o, &v) in out.iter_mut().zip(&x[off..off + len]) {
                        *o = f.scalar(v);
                    }
                })
            }
        }
    }

    /// x ← f(x).
    pub fn forward_in_place(self, x: &mut [f32], width: usize) {
        match self {
            Activation::Linear => {}
            Activation::Softmax => for_each_row(x, width, |_, row| softmax_row(row)),
            Activation::LogSoftmax => for_each_row(x, width, |_, row| log_softmax_row(row)),
            // The commonest case gets a loop with no per-element dispatch (it vectorises).
            Activation::Relu => {
                for_each_block(x, |_, b| b.iter_mut().for_each(|v| *v = v.max(0.0)))
            }
            _ => for_each_block(x, |_, b| {
                for v in b.iter_mut() {
                    *v = self.scalar(*v);
                }
            }),
        }
    }

    /// Whether the function acts on each element alone (not softmax-like rows).
    pub fn is_elementwise(self) -> bool {
        !matches!(self, Activation::Softmax | Activation::LogSoftmax)
    }

    /// y = f(x) elementwise on one thread, with vectorisable sigmoid and tanh
    /// (`fastmath`): for small slices in hot loops (recurrent gates).
    #[inline(always)]
    pub fn map_slice(self, x: &[f32], y: &mut [f32]) {
        match self {
            Activation::Sigmoid => y
                .iter_mut()
                .zip(x)
                .for_each(|(o, &v)| *o = fastmath::sigmoid(v)),
            Activation::Tanh => y
                .iter_mut()
                .zip(x)
                .for_each(|(o, &v)| *o = fastmath::tanh(v)),
            Activation::Linear => y.copy_from_slice(&x[..y.len()]),
            _ => y.iter_mut().zip(x).for_each(|(o, &v)| *o = self.scalar(v)),
        }
    }

    /// x ← f(x) elementwise on one thread (a row in a kernel's epilogue).
    #[inline]
    pub fn map_in_place(self, x: &mut [f32]) {
        match self {
            Activation::Linear => {}
            Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Softmax => softmax_row(x),
            Activation::LogSoftmax => log_softmax_row(x),
            _ => x.iter_mut().for_each(|v| *v = self.scalar(*v)),
        }
    }

    /// d ← d · f'(x) elementwise on one thread, given input `x` and output `y`.
    #[inline(always)]
    pub fn scale_by_derivative(self, x: &[f32], y: &[f32], d: &mut [f32]) {
        match self {
            Activation::Sigmoid => d.iter_mut().zip(y).for_each(|(g, &v)| *g *= v * (1.0 - v)),
            Activation::Tanh => d.iter_mut().zip(y).for_each(|(g, &v)| *g *= 1.0 - v * v),
            Activation::Linear => {}
            _ => d
                .iter_mut()
                .zip(x.iter().zip(y))
                .for_each(|(g, (&xv, &yv))| *g *= self.derivative(xv, yv)),
        }
    }

    /// f'(x) for an elementwise activation, given both its input and output.
    #[inline]
    pub fn derivative(self, x: f32, y: f32) -> f32 {
        if self.backward_from_output() {
            self.derivative_from_output(y)
        } else {
            self.derivative_from_input(x)
        }
    }

    #[inline]
    pub fn scalar(self, x: f32) -> f32 {
        match self {
            Activation::Linear => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu { negative_slope } => {
                if x > 0.0 {
                    x
                } else {
                    negative_slope * x
                }
            }
            Activation::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x.exp_m1()
                }
            }
            Activation::Selu => {
                if x > 0.0 {
                    SELU_SCALE * x
                } else {
                    SELU_SCALE * SELU_ALPHA * x.exp_m1()
                }
            }
            Activation::Gelu { approximate: false } => {
                let xd = x as f64;
                (0.5 * xd * erfc(-xd / std::f64::consts::SQRT_2)) as f32
            }
            Activation::Gelu { approximate: true } => {
                let xd = x as f64;
                let inner = (2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd);
                (0.5 * xd * (1.0 + inner.tanh())) as f32
            }
            Activation::Silu => x * sigmoid(x),
            Activation::Sigmoid => sigmoid(x),
            Activation::HardSigmoid => (x / 6.0 + 0.5).clamp(0.0, 1.0),
            Activation::Tanh => x.tanh(),
            Activation::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Activation::Softsign => x / (1.0 + x.abs()),
            Activation::Softmax | Activation::LogSoftmax => unreachable!("row-wise activation"),
        }
    }

    /// d ← d · f'(x), given the input `x` (may be empty when
    /// `backward_from_output`) and the output `y`.
    pub fn backward(self, x: &[f32], y: &[f32], d: &mut [f32], width: usize) {
        match self {
            Activation::Linear => {}
            Activation::Softmax => for_each_row(d, width, |r, drow| {
                let yrow = &y[r * width..(r + 1) * width];
                let dot: f32 = drow.iter().zip(yrow).map(|(a, b)| a * b).sum();
                for (dv, &yv) in drow.iter_mut().zip(yrow) {
                    *dv = yv * (*dv - dot);
                }
            }),
            Activation::LogSoftmax => for_each_row(d, width, |r, drow| {
                let yrow = &y[r * width..(r + 1) * width];
                let total: f32 = drow.iter().sum();
                for (dv, &yv) in drow.iter_mut().zip(yrow) {
                    *dv -= yv.exp() * total;
                }
            }),
            Activation::Relu => for_each_block(d, |off, b| {
                let len = b.len();
                for (dv, &yv) in b.iter_mut().zip(&y[off..off + len]) {
                    *dv = if yv > 0.0 { *dv } else { 0.0 };
                }
            }),
            _ if self.backward_from_output() => for_each_block(d, |off, b| {
                let len = b.len();
                for (dv, &yv) in b.iter_mut().zip(&y[off..off + len]) {
                    *dv *= self.derivative_from_output(yv);
                }
            }),
            _ => for_each_block(d, |off, b| {
                let len = b.len();
                for (dv, &xv) in b.iter_mut().zip(&x[off..off + len]) {
                    *dv *= self.derivative_from_input(xv);
                }
            }),
        }
    }

    #[inline]
    fn derivative_from_output(self, y: f32) -> f32 {
        match self {
            Activation::Relu => (y > 0.0) as u8 as f32,
            Activation::LeakyRelu { negative_slope } => {
                if y > 0.0 {
                    1.0
                } else {
                    negative_slope
                }
            }
            Activation::Elu { alpha } => {
                if y > 0.0 {
                    1.0
                } else {
                    y + alpha
                }
            }
            Activation::Sigmoid => y * (1.0 - y),
            Activation::Tanh => 1.0 - y * y,
            Activation::HardSigmoid => (y > 0.0 && y < 1.0) as u8 as f32 / 6.0,
            _ => 1.0,
        }
    }

    #[inline]
    fn derivative_from_input(self, x: f32) -> f32 {
        match self {
            Activation::LeakyRelu { negative_slope } => {
                if x > 0.0 {
                    1.0
                } else {
                    negative_slope
                }
            }
            Activation::Selu => {
                if x > 0.0 {
                    SELU_SCALE
                } else {
                    SELU_SCALE * SELU_ALPHA * x.exp()
                }
            }
            Activation::Gelu { approximate: false } => {
                let xd = x as f64;
                let cdf = 0.5 * erfc(-xd / std::f64::consts::SQRT_2);
                let pdf = (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
                (cdf + xd * pdf) as f32
            }
            Activation::Gelu { approximate: true } => {
                let xd = x as f64;
                let c = (2.0 / std::f64::consts::PI).sqrt();
                let inner = c * (xd + 0.044715 * xd * xd * xd);
                let t = inner.tanh();
                let dinner = c * (1.0 + 3.0 * 0.044715 * xd * xd);
                (0.5 * (1.0 + t) + 0.5 * xd * (1.0 - t * t) * dinner) as f32
            }
            Activation::Silu => {
                let s = sigmoid(x);
                s + x * s * (1.0 - s)
            }
            Activation::Softplus => sigmoid(x),
            Activation::Softsign => {
                let d = 1.0 + x.abs();
                1.0 / (d * d)
            }
            other => other.derivative_from_output(other.scalar(x)),
        }
    }
}

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

pub fn log_softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
    let log_norm = max + sum.ln();
    for v in row.iter_mut() {
        *v -= log_norm;
    }
}

/// Complementary error function, relative error below 1.2e-7 everywhere
/// (Chebyshev fit from Numerical Recipes' `erfcc`), ample for f32 GELU.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (-1.0, 1.842_700_792_949_715),
            (2.0, 0.004_677_734_981_047_266),
        ] {
            assert!((erfc(x) - want).abs() < 2e-7 * want.max(1e-3) + 1e-9, "{x}");
        }
    }

    #[test]
    fn unknown_name_is_an_error() {
        let e = Activation::from_spec(&Value::String("relux".into())).unwrap_err();
        assert!(e.0.contains("relux"));
    }
}
