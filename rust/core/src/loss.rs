//! Losses, reduced as Keras's "sum_over_batch_size": Σᵢ wᵢ·lossᵢ / batch.
//!
//! `y_true` has `true_width` columns per sample: the same width as the
//! prediction for dense targets, one column of class ids for sparse losses.

use crate::activation::{log_softmax_row, sigmoid};
use crate::error::{Error, Result};
use serde_json::Value;

/// Probabilities are clipped to [EPSILON, 1 - EPSILON] (Keras's backend epsilon).
pub const EPSILON: f32 = 1e-7;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    MeanSquaredError,
    MeanAbsoluteError,
    Huber {
        delta: f32,
    },
    BinaryCrossentropy {
        from_logits: bool,
        label_smoothing: f32,
    },
    CategoricalCrossentropy {
        from_logits: bool,
        label_smoothing: f32,
    },
    SparseCategoricalCrossentropy {
        from_logits: bool,
    },
    /// A loss written in Python (`compile(loss=fn)`): traced into the model's graph,
    /// whose mean reaches the total as an added loss; the head itself adds nothing.
    Traced,
}

impl Loss {
    /// From `{"name": "categorical_crossentropy", "from_logits": false, ...}` or a name.
    pub fn from_spec(spec: &Value) -> Result<Self> {
        let (name, a) = crate::error::split_spec(spec, "loss")?;
        let from_logits = a
            .get("from_logits")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let num = |k: &str, d: f64| a.get(k).and_then(Value::as_f64).unwrap_or(d) as f32;
        Ok(match name {
            "mean_squared_error" | "mse" => Loss::MeanSquaredError,
            "mean_absolute_error" | "mae" => Loss::MeanAbsoluteError,
            "huber" => Loss::Huber {
                delta: num("delta", 1.0),
            },
            "binary_crossentropy" => Loss::BinaryCrossentropy {
                from_logits,
                label_smoothing: num("label_smoothing", 0.0),
            },
            "categorical_crossentropy" => Loss::CategoricalCrossentropy {
                from_logits,
                label_smoothing: num("label_smoothing", 0.0),
            },
            "sparse_categorical_crossentropy" => {
                Loss::SparseCategoricalCrossentropy { from_logits }
            }
            "traced" => Loss::Traced,
            other => return Err(Error(format!("unknown loss '{other}'"))),
        })
    }

    pub fn is_sparse(self) -> bool {
        matches!(self, Loss::SparseCategoricalCrossentropy { .. })
    }

    /// Whether a softmax output layer can hand this loss its pre-activations:
    /// then the gradient with respect to the logits is simply p - y.
    pub fn fuses_with_softmax(self) -> bool {
        matches!(
            self,
            Loss::CategoricalCrossentropy {
                from_logits: false,
                ..
            } | Loss::SparseCategoricalCrossentropy { from_logits: false }
        )
    }

    /// Σᵢ wᵢ·lossᵢ over `rows` samples (f64). If `grad` is given, it receives
    /// d(Σᵢ wᵢ·lossᵢ / norm)/d y_pred — or, with `fused_softmax`, the gradient
    /// with respect to the logits of the softmax that produced `y_pred`.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate(
        self,
        y_true: &[f32],
        true_width: usize,
        y_pred: &[f32],
        width: usize,
        weights: Option<&[f32]>,
        norm: f32,
        mut grad: Option<&mut [f32]>,
        fused_softmax: bool,
    ) -> f64 {
        let rows = y_pred.len().checked_div(width).unwrap_or(0);
        let mut total = 0.0f64;
        let mut scratch = vec![0.0f32; width];
        for r in 0..rows {
            let w = weights.map_or(1.0, |w| w[r]);
            let p = &y_pred[r * width..(r + 1) * width];
            let t = &y_true[r * true_width..(r + 1) * true_width];
            let g = grad
                .as_deref_mut()
                .map(|g| &mut g[r * width..(r + 1) * width]);
            let scale = w / norm;
            total += w as f64 * self.sample(t, p, g, scale, fused_softmax, &mut scratch);
        }
        total
    }

    /// One sample's loss; writes scale·dloss/dp into `g` when given.
    fn sample(
        self,
        t: &[f32],
        p: &[f32],
        g: Option<&mut [f32]>,
        scale: f32,
        fused: bool,
        scratch: &mut [f32],
    ) -> f64 {
        let width = p.len();
        let inv_w = 1.0 / width as f32;
        match self {
            Loss::Traced => {
                if let Some(g) = g {
                    g.fill(0.0);
                }
                0.0
            }
            Loss::MeanSquaredError => {
                let mut s = 0.0f64;
                for (&pv, &tv) in p.iter().zip(t) {
                    s += ((pv - tv) as f64).powi(2);
                }
                if let Some(g) = g {
                    for ((gv, &pv), &tv) in g.iter_mut().zip(p).zip(t) {
                        *gv = scale * 2.0 * (pv - tv) * inv_w;
                    }
                }
                s / width as f64
            }
            Loss::MeanAbsoluteError => {
                let s: f64 = p
                    .iter()
                    .zip(t)
                    .map(|(&pv, &tv)| (pv - tv).abs() as f64)
                    .sum();
                if let Some(g) = g {
                    for ((gv, &pv), &tv) in g.iter_mut().zip(p).zip(t) {
                        let e = pv - tv;
                        *gv = scale
                            * inv_w
                            * if e > 0.0 {
                                1.0
                            } else if e < 0.0 {
                                -1.0
                            } else {
                                0.0
                            };
                    }
                }
                s / width as f64
            }
            Loss::Huber { delta } => {
                let mut s = 0.0f64;
                for (&pv, &tv) in p.iter().zip(t) {
                    let e = (pv - tv).abs() as f64;
                    let d = delta as f64;
                    s += if e <= d {
                        0.5 * e * e
                    } else {
                        d * e - 0.5 * d * d
                    };
                }
                if let Some(g) = g {
                    for ((gv, &pv), &tv) in g.iter_mut().zip(p).zip(t) {
                        let e = pv - tv;
                        *gv = scale * inv_w * e.clamp(-delta, delta);
                    }
                }
                s / width as f64
            }
            Loss::BinaryCrossentropy {
                from_logits,
                label_smoothing,
            } => {
                let smooth = |tv: f32| tv * (1.0 - label_smoothing) + 0.5 * label_smoothing;
                let mut s = 0.0f64;
                for (&pv, &tv) in p.iter().zip(t) {
                    let tv = smooth(tv) as f64;
                    if from_logits {
                        let z = pv as f64;
                        s += z.max(0.0) - z * tv + (-z.abs()).exp().ln_1p();
                    } else {
                        let q = pv.clamp(EPSILON, 1.0 - EPSILON) as f64;
                        s -= tv * q.ln() + (1.0 - tv) * (1.0 - q).ln();
                    }
                }
                if let Some(g) = g {
                    for ((gv, &pv), &tv) in g.iter_mut().zip(p).zip(t) {
                        let tv = smooth(tv);
                        *gv = scale
                            * inv_w
                            * if from_logits {
                                sigmoid(pv) - tv
                            } else if (EPSILON..=1.0 - EPSILON).contains(&pv) {
                                (pv - tv) / (pv * (1.0 - pv))
                            } else {
                                0.0 // clipped: no gradient flows, as in Keras
                            };
                    }
                }
                s / width as f64
            }
            Loss::CategoricalCrossentropy {
                from_logits,
                label_smoothing,
            } => {
                let k = width as f32;
                for (sv, &tv) in scratch.iter_mut().zip(t) {
                    *sv = tv * (1.0 - label_smoothing) + label_smoothing / k;
                }
                cross_entropy(scratch, p, g, scale, from_logits, fused)
            }
            Loss::SparseCategoricalCrossentropy { from_logits } => {
                scratch.fill(0.0);
                let class = t[0] as usize;
                if class < width {
                    scratch[class] = 1.0;
                }
                cross_entropy(scratch, p, g, scale, from_logits, fused)
            }
        }
    }
}

/// −Σⱼ tⱼ·log qⱼ with q = softmax(p) (logits) or q = clip(p / Σp) (probabilities).
fn cross_entropy(
    t: &[f32],
    p: &[f32],
    g: Option<&mut [f32]>,
    scale: f32,
    from_logits: bool,
    fused: bool,
) -> f64 {
    let t_sum: f32 = t.iter().sum();
    if from_logits {
        let mut log_q = p.to_vec();
        log_softmax_row(&mut log_q);
        let loss: f64 = -t
            .iter()
            .zip(&log_q)
            .map(|(&tv, &lq)| tv as f64 * lq as f64)
            .sum::<f64>();
        if let Some(g) = g {
            for ((gv, &tv), &lq) in g.iter_mut().zip(t).zip(&log_q) {
                *gv = scale * (lq.exp() * t_sum - tv);
            }
        }
        return loss;
    }
    let total: f32 = p.iter().sum();
    let loss: f64 = -t
        .iter()
        .zip(p)
        .map(|(&tv, &pv)| tv as f64 * ((pv / total).clamp(EPSILON, 1.0 - EPSILON) as f64).ln())
        .sum::<f64>();
    if let Some(g) = g {
        if fused {
            // p came from a softmax: d loss / d logits = p·Σt − t.
            for ((gv, &tv), &pv) in g.iter_mut().zip(t).zip(p) {
                *gv = scale * (pv * t_sum - tv);
            }
        } else {
            // Through q = clip(p / S): dL/dp_k = (h_k − Σⱼ hⱼ qⱼ) / S, hⱼ = −tⱼ/qⱼ where unclipped.
            let mut dot = 0.0f32;
            for (gv, (&tv, &pv)) in g.iter_mut().zip(t.iter().zip(p)) {
                let q = pv / total;
                *gv = if (EPSILON..=1.0 - EPSILON).contains(&q) {
                    -tv / q
                } else {
                    0.0
                };
                dot += *gv * q;
            }
            for gv in g.iter_mut() {
                *gv = scale * (*gv - dot) / total;
            }
        }
    }
    loss
}
