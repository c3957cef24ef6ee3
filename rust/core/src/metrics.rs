//! Metrics accumulated over an epoch as weighted means: (Σ w·value, Σ w).

use crate::error::{Error, Result};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    BinaryAccuracy { threshold: f32 },
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    TopKCategoricalAccuracy { k: usize },
    SparseTopKCategoricalAccuracy { k: usize },
    MeanSquaredError,
    MeanAbsoluteError,
}

impl Metric {
    /// From a resolved name (Python turns "accuracy" into the right variant).
    pub fn from_spec(spec: &Value) -> Result<Self> {
        let (name, a) = crate::error::split_spec(spec, "metric")?;
        let k = a.get("k").and_then(Value::as_u64).unwrap_or(5) as usize;
        Ok(match name {
            "binary_accuracy" => Metric::BinaryAccuracy {
                threshold: a.get("threshold").and_then(Value::as_f64).unwrap_or(0.5) as f32,
            },
            "categorical_accuracy" => Metric::CategoricalAccuracy,
            "sparse_categorical_accuracy" => Metric::SparseCategoricalAccuracy,
            "top_k_categorical_accuracy" => Metric::TopKCategoricalAccuracy { k },
            "sparse_top_k_categorical_accuracy" => Metric::SparseTopKCategoricalAccuracy { k },
            "mean_squared_error" | "mse" => Metric::MeanSquaredError,
            "mean_absolute_error" | "mae" => Metric::MeanAbsoluteError,
            other => return Err(Error(format!("unknown metric '{other}'"))),
        })
    }

    /// Adds this batch's weighted values to `acc` = (Σ w·value, Σ w).
    pub fn update(
        self,
        y_true: &[f32],
        true_width: usize,
        y_pred: &[f32],
        width: usize,
        weights: Option<&[f32]>,
        acc: &mut (f64, f64),
    ) {
        let rows = y_pred.len().checked_div(width).unwrap_or(0);
        for r in 0..rows {
            let w = weights.map_or(1.0, |w| w[r]) as f64;
            let p = &y_pred[r * width..(r + 1) * width];
            let t = &y_true[r * true_width..(r + 1) * true_width];
            acc.0 += w * self.sample(t, p);
            acc.1 += w;
        }
    }

    fn sample(self, t: &[f32], p: &[f32]) -> f64 {
        let n = p.len() as f64;
        match self {
            Metric::BinaryAccuracy { threshold } => {
                p.iter()
                    .zip(t)
                    .filter(|(&pv, &tv)| ((pv > threshold) as u8 as f32) == tv)
                    .count() as f64
                    / n
            }
            Metric::CategoricalAccuracy => (argmax(p) == argmax(t)) as u8 as f64,
            Metric::SparseCategoricalAccuracy => (argmax(p) as f32 == t[0]) as u8 as f64,
            Metric::TopKCategoricalAccuracy { k } => in_top_k(p, argmax(t), k) as u8 as f64,
            Metric::SparseTopKCategoricalAccuracy { k } => {
                in_top_k(p, t[0] as usize, k) as u8 as f64
            }
            Metric::MeanSquaredError => {
                p.iter()
                    .zip(t)
                    .map(|(&a, &b)| ((a - b) as f64).powi(2))
                    .sum::<f64>()
                    / n
            }
            Metric::MeanAbsoluteError => {
                p.iter()
                    .zip(t)
                    .map(|(&a, &b)| (a - b).abs() as f64)
                    .sum::<f64>()
                    / n
            }
        }
    }
}

/// Index of the first maximum.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Whether class `c` is among the `k` largest predictions (fewer than k strictly larger).
fn in_top_k(p: &[f32], c: usize, k: usize) -> bool {
    c < p.len() && p.iter().filter(|&&x| x > p[c]).count() < k
}
