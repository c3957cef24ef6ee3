//! Weight penalties added to the loss: l1·Σ|w| + l2·Σw² (no ½, as in Keras).

use crate::error::{Error, Result};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Regularizer {
    pub l1: f32,
    pub l2: f32,
}

impl Regularizer {
    /// From null, `{"l1": 0.01}`, `{"l2": 0.01}` or `{"l1": .., "l2": ..}`.
    pub fn from_spec(spec: &Value) -> Result<Option<Self>> {
        match spec {
            Value::Null => Ok(None),
            Value::Object(o) => {
                let get = |k: &str| -> Result<f32> {
                    match o.get(k) {
                        None | Some(Value::Null) => Ok(0.0),
                        Some(v) => v.as_f64().map(|x| x as f32).ok_or_else(|| {
                            Error(format!(
                                "regularizer argument '{k}' must be a number, got {v}"
                            ))
                        }),
                    }
                };
                Ok(Some(Regularizer {
                    l1: get("l1")?,
                    l2: get("l2")?,
                }))
            }
            other => Err(Error(format!("invalid regularizer spec {other}"))),
        }
    }

    /// The penalty for `w`, in f64.
    pub fn penalty(&self, w: &[f32]) -> f64 {
        let mut total = 0.0f64;
        if self.l1 != 0.0 {
            total += self.l1 as f64 * w.iter().map(|v| v.abs() as f64).sum::<f64>();
        }
        if self.l2 != 0.0 {
            total += self.l2 as f64 * w.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>();
        }
        total
    }

    /// grad += d penalty / d w.
    pub fn add_gradient(&self, w: &[f32], grad: &mut [f32]) {
        let (l1, l2) = (self.l1, self.l2);
        for (g, &v) in grad.iter_mut().zip(w) {
            let sign = if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            };
            *g += l1 * sign + 2.0 * l2 * v;
        }
    }
}
