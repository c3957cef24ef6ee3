//! Optimizers with Keras 3's update rules, applied in place in one pass per
//! parameter: gradient clipping, weight decay and the update fused.
//!
//! Per-parameter state ("slots": moments, accumulators) is stored interleaved,
//! `slots[i * n_slots + s]`, so a block of weights and its state are contiguous
//! and blocks update in parallel without sharing anything.

use crate::error::{Error, Result};
use crate::layers::Param;
use crate::parallel::{sum_squares, PARALLEL_THRESHOLD};
use rayon::prelude::*;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Sgd { momentum: f32, nesterov: bool },
    RmsProp { rho: f32, momentum: f32, epsilon: f32, centered: bool },
    Adam { beta_1: f32, beta_2: f32, epsilon: f32, amsgrad: bool },
    Adagrad { initial_accumulator_value: f32, epsilon: f32 },
    Nadam { beta_1: f32, beta_2: f32, epsilon: f32 },
}

impl Kind {
    /// Names of the per-parameter state variables, in slot order.
    pub fn slot_names(self) -> Vec<&'static str> {
        match self {
            Kind::Sgd { momentum, .. } if momentum != 0.0 => vec!["momentum"],
            Kind::Sgd { .. } => vec![],
            Kind::RmsProp { momentum, centered, .. } => {
                let mut s = vec!["velocity"];
                if momentum > 0.0 {
                    s.push("momentum");
                }
                if centered {
                    s.push("average_gradient");
                }
                s
            }
            Kind::Adam { amsgrad: true, .. } => vec!["momentum", "velocity", "velocity_hat"],
            Kind::Adam { .. } | Kind::Nadam { .. } => vec!["momentum", "velocity"],
            Kind::Adagrad { .. } => vec!["accumulator"],
        }
    }
}

pub struct Optimizer {
    pub kind: Kind,
    pub learning_rate: f32,
    pub weight_decay: Option<f32>,
    pub clipnorm: Option<f32>,
    pub clipvalue: Option<f32>,
    pub global_clipnorm: Option<f32>,
    /// Completed update steps (Keras's `optimizer.iterations`).
    pub iterations: u64,
    /// One interleaved state vector per parameter; empty until the first step.
    pub slots: Vec<Vec<f32>>,
    /// Nadam's running product of momentum schedule values.
    pub u_product: f64,
}

fn opt_f32(v: &Value, key: &str) -> Result<Option<f32>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(|f| Some(f as f32))
            .ok_or_else(|| Error(format!("optimizer argument '{key}' must be a number, got {x}"))),
    }
}

impl Optimizer {
    /// From `{"name": "adam", "learning_rate": 0.001, "beta_1": 0.9, ...}`;
    /// missing arguments take Keras's defaults.
    pub fn from_spec(spec: &Value) -> Result<Self> {
        let name = spec
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error(format!("optimizer spec needs a 'name', got {spec}")))?;
        let f = |k: &str, d: f32| -> Result<f32> { Ok(opt_f32(spec, k)?.unwrap_or(d)) };
        let b = |k: &str| spec.get(k).and_then(Value::as_bool).unwrap_or(false);
        let (kind, default_lr, default_wd) = match name {
            "sgd" => (Kind::Sgd { momentum: f("momentum", 0.0)?, nesterov: b("nesterov") }, 0.01, None),
            "rmsprop" => (
                Kind::RmsProp { rho: f("rho", 0.9)?, momentum: f("momentum", 0.0)?, epsilon: f("epsilon", 1e-7)?, centered: b("centered") },
                0.001,
                None,
            ),
            "adam" | "adamw" => (
                Kind::Adam { beta_1: f("beta_1", 0.9)?, beta_2: f("beta_2", 0.999)?, epsilon: f("epsilon", 1e-7)?, amsgrad: b("amsgrad") },
                0.001,
                (name == "adamw").then_some(0.004),
            ),
            "adagrad" => (
                Kind::Adagrad { initial_accumulator_value: f("initial_accumulator_value", 0.1)?, epsilon: f("epsilon", 1e-7)? },
                0.001,
                None,
            ),
            "nadam" => (Kind::Nadam { beta_1: f("beta_1", 0.9)?, beta_2: f("beta_2", 0.999)?, epsilon: f("epsilon", 1e-7)? }, 0.001, None),
            other => return Err(Error(format!("unknown optimizer '{other}'"))),
        };
        let weight_decay = match spec.get("weight_decay") {
            None => default_wd,
            Some(_) => opt_f32(spec, "weight_decay")?,
        };
        Ok(Optimizer {
            kind,
            learning_rate: f("learning_rate", default_lr)?,
            weight_decay,
            clipnorm: opt_f32(spec, "clipnorm")?,
            clipvalue: opt_f32(spec, "clipvalue")?,
            global_clipnorm: opt_f32(spec, "global_clipnorm")?,
            iterations: 0,
            slots: Vec::new(),
            u_product: 1.0,
        })
    }

    pub fn n_slots(&self) -> usize {
        self.kind.slot_names().len()
    }

    /// Creates the state for `params` (sizes in order) if not there yet.
    pub fn ensure_slots(&mut self, sizes: &[usize]) {
        let ns = self.n_slots();
        if self.slots.len() == sizes.len() && self.slots.iter().zip(sizes).all(|(s, &n)| s.len() == n * ns) {
            return;
        }
        let init = match self.kind {
            Kind::Adagrad { initial_accumulator_value, .. } => initial_accumulator_value,
            _ => 0.0,
        };
        self.slots = sizes.iter().map(|&n| vec![init; n * ns]).collect();
    }

    /// One update of every parameter from its `grad`.
    pub fn apply(&mut self, params: &mut [&mut Param]) {
        let sizes: Vec<usize> = params.iter().map(|p| p.value.len()).collect();
        self.ensure_slots(&sizes);
        let lr = self.learning_rate;
        // Keras applies at most one kind of clipping: clipnorm, else global_clipnorm, else clipvalue.
        let global_scale = self.global_clipnorm.filter(|&c| c > 0.0).map(|clip| {
            let norm = params.iter().map(|p| sum_squares(p.grad.as_slice().expect("contiguous"))).sum::<f64>().sqrt();
            clip_scale(norm, clip)
        });
        let clipvalue = if self.clipnorm.is_some_and(|c| c > 0.0) || global_scale.is_some() {
            None
        } else {
            self.clipvalue.filter(|&c| c > 0.0)
        };
        if let Kind::Nadam { beta_1, .. } = self.kind {
            let t = (self.iterations + 1) as f64;
            self.u_product *= beta_1 as f64 * (1.0 - 0.5 * 0.96f64.powf(t));
        }
        let step = self.step_rule(lr);
        let ns = self.n_slots();
        let decay = self.weight_decay.filter(|&w| w != 0.0).map(|w| w * lr);
        for (param, slots) in params.iter_mut().zip(self.slots.iter_mut()) {
            let Param { value, grad, .. } = &mut **param;
            let value = value.as_slice_mut().expect("contiguous");
            let grad = grad.as_slice().expect("contiguous");
            let scale = match (self.clipnorm.filter(|&c| c > 0.0), global_scale) {
                (Some(clip), _) => clip_scale(sum_squares(grad).sqrt(), clip),
                (None, Some(s)) => s,
                _ => 1.0,
            };
            let update = |p: &mut [f32], g: &[f32], s: &mut [f32]| {
                for i in 0..p.len() {
                    let mut gi = g[i] * scale;
                    if let Some(c) = clipvalue {
                        gi = gi.clamp(-c, c);
                    }
                    if let Some(d) = decay {
                        p[i] -= p[i] * d;
                    }
                    step.apply(&mut p[i], gi, &mut s[i * ns..(i + 1) * ns]);
                }
            };
            const BLOCK: usize = 4096;
            if value.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
                value
                    .par_chunks_mut(BLOCK)
                    .zip(grad.par_chunks(BLOCK))
                    .zip(slots.par_chunks_mut((BLOCK * ns).max(1)))
                    .for_each(|((p, g), s)| update(p, g, s));
            } else {
                update(value, grad, slots);
            }
        }
        self.iterations += 1;
    }

    /// The per-element rule for this step, with the step's constants folded in.
    fn step_rule(&self, lr: f32) -> Step {
        let t = (self.iterations + 1) as f64;
        match self.kind {
            Kind::Sgd { momentum, nesterov } => Step::Sgd { lr, momentum, nesterov },
            Kind::RmsProp { rho, momentum, epsilon, centered } => Step::RmsProp { lr, rho, momentum, epsilon, centered },
            Kind::Adam { beta_1, beta_2, epsilon, amsgrad } => {
                let alpha = lr as f64 * (1.0 - (beta_2 as f64).powf(t)).sqrt() / (1.0 - (beta_1 as f64).powf(t));
                Step::Adam { alpha: alpha as f32, beta_1, beta_2, epsilon, amsgrad }
            }
            Kind::Adagrad { epsilon, .. } => Step::Adagrad { lr, epsilon },
            Kind::Nadam { beta_1, beta_2, epsilon } => {
                let b1 = beta_1 as f64;
                let u_t = b1 * (1.0 - 0.5 * 0.96f64.powf(t));
                let u_t1 = b1 * (1.0 - 0.5 * 0.96f64.powf(t + 1.0));
                let u_prod_t1 = self.u_product * u_t1;
                Step::Nadam {
                    lr,
                    beta_1,
                    beta_2,
                    epsilon,
                    m_coef: (u_t1 / (1.0 - u_prod_t1)) as f32,
                    g_coef: ((1.0 - u_t) / (1.0 - self.u_product)) as f32,
                    v_coef: (1.0 / (1.0 - (beta_2 as f64).powf(t))) as f32,
                }
            }
        }
    }
}

/// Keras's clip-by-norm factor: clip / max(norm, clip).
fn clip_scale(norm: f64, clip: f32) -> f32 {
    if norm > clip as f64 {
        (clip as f64 / norm) as f32
    } else {
        1.0
    }
}

#[derive(Clone, Copy)]
enum Step {
    Sgd { lr: f32, momentum: f32, nesterov: bool },
    RmsProp { lr: f32, rho: f32, momentum: f32, epsilon: f32, centered: bool },
    Adam { alpha: f32, beta_1: f32, beta_2: f32, epsilon: f32, amsgrad: bool },
    Adagrad { lr: f32, epsilon: f32 },
    Nadam { lr: f32, beta_1: f32, beta_2: f32, epsilon: f32, m_coef: f32, g_coef: f32, v_coef: f32 },
}

impl Step {
    #[inline(always)]
    fn apply(self, p: &mut f32, g: f32, s: &mut [f32]) {
        match self {
            Step::Sgd { lr, momentum, nesterov } => {
                if momentum != 0.0 {
                    let m = momentum * s[0] - lr * g;
                    s[0] = m;
                    *p += if nesterov { momentum * m - lr * g } else { m };
                } else {
                    *p -= lr * g;
                }
            }
            Step::RmsProp { lr, rho, momentum, epsilon, centered } => {
                let v = rho * s[0] + (1.0 - rho) * g * g;
                s[0] = v;
                let denominator = if centered {
                    let idx = if momentum > 0.0 { 2 } else { 1 };
                    let avg = rho * s[idx] + (1.0 - rho) * g;
                    s[idx] = avg;
                    v - avg * avg + epsilon
                } else {
                    v + epsilon
                };
                let increment = lr * g / denominator.sqrt();
                if momentum > 0.0 {
                    s[1] = momentum * s[1] + increment;
                    *p -= s[1];
                } else {
                    *p -= increment;
                }
            }
            Step::Adam { alpha, beta_1, beta_2, epsilon, amsgrad } => {
                s[0] += (g - s[0]) * (1.0 - beta_1);
                s[1] += (g * g - s[1]) * (1.0 - beta_2);
                let v = if amsgrad {
                    s[2] = s[2].max(s[1]);
                    s[2]
                } else {
                    s[1]
                };
                *p -= s[0] * alpha / (v.sqrt() + epsilon);
            }
            Step::Adagrad { lr, epsilon } => {
                s[0] += g * g;
                *p -= lr * g / (s[0] + epsilon).sqrt();
            }
            Step::Nadam { lr, beta_1, beta_2, epsilon, m_coef, g_coef, v_coef } => {
                s[0] += (g - s[0]) * (1.0 - beta_1);
                s[1] += (g * g - s[1]) * (1.0 - beta_2);
                let m_hat = m_coef * s[0] + g_coef * g;
                let v_hat = s[1] * v_coef;
                *p -= m_hat * lr / (v_hat.sqrt() + epsilon);
            }
        }
    }
}
