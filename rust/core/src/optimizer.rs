//! Optimizers with Keras 3's update rules, applied in place in one pass per
//! parameter: gradient clipping, weight decay and the update fused.
//!
//! Per-parameter state ("slots": moments, accumulators) is stored block by
//! block: for each block of `SLOT_BLOCK` weights, slot 0 of the block, then
//! slot 1, ... So a block of weights and its state are contiguous (blocks update
//! in parallel without sharing anything) and each slot is a plain array inside
//! the block (the loops vectorise).

use crate::error::{Error, Result};
use crate::layers::Param;
use crate::parallel::{sum_squares, PARALLEL_THRESHOLD};
use crate::schedule::Schedule;
use rayon::prelude::*;
use serde_json::Value;

/// Weights per block of optimizer state (see the module comment).
pub const SLOT_BLOCK: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Sgd {
        momentum: f32,
        nesterov: bool,
    },
    RmsProp {
        rho: f32,
        momentum: f32,
        epsilon: f32,
        centered: bool,
    },
    Adam {
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        amsgrad: bool,
    },
    Adagrad {
        initial_accumulator_value: f32,
        epsilon: f32,
    },
    Nadam {
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
    },
}

impl Kind {
    /// Names of the per-parameter state variables, in slot order. A static list:
    /// every training step asks for their number.
    pub fn slot_names(self) -> &'static [&'static str] {
        match self {
            Kind::Sgd { momentum, .. } if momentum != 0.0 => &["momentum"],
            Kind::Sgd { .. } => &[],
            Kind::RmsProp {
                momentum, centered, ..
            } => match (momentum > 0.0, centered) {
                (false, false) => &["velocity"],
                (true, false) => &["velocity", "momentum"],
                (false, true) => &["velocity", "average_gradient"],
                (true, true) => &["velocity", "momentum", "average_gradient"],
            },
            Kind::Adam { amsgrad: true, .. } => &["momentum", "velocity", "velocity_hat"],
            Kind::Adam { .. } | Kind::Nadam { .. } => &["momentum", "velocity"],
            Kind::Adagrad { .. } => &["accumulator"],
        }
    }
}

pub struct Optimizer {
    pub kind: Kind,
    /// The rate of the latest (or, before any, the first) step.
    pub learning_rate: f32,
    /// A learning-rate schedule, evaluated at `iterations` before each step.
    pub schedule: Option<Schedule>,
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
        Some(x) => x.as_f64().map(|f| Some(f as f32)).ok_or_else(|| {
            Error(format!(
                "optimizer argument '{key}' must be a number, got {x}"
            ))
        }),
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
            "sgd" => (
                Kind::Sgd {
                    momentum: f("momentum", 0.0)?,
                    nesterov: b("nesterov"),
                },
                0.01,
                None,
            ),
            "rmsprop" => (
                Kind::RmsProp {
                    rho: f("rho", 0.9)?,
                    momentum: f("momentum", 0.0)?,
                    epsilon: f("epsilon", 1e-7)?,
                    centered: b("centered"),
                },
                0.001,
                None,
            ),
            "adam" | "adamw" => (
                Kind::Adam {
                    beta_1: f("beta_1", 0.9)?,
                    beta_2: f("beta_2", 0.999)?,
                    epsilon: f("epsilon", 1e-7)?,
                    amsgrad: b("amsgrad"),
                },
                0.001,
                (name == "adamw").then_some(0.004),
            ),
            "adagrad" => (
                Kind::Adagrad {
                    initial_accumulator_value: f("initial_accumulator_value", 0.1)?,
                    epsilon: f("epsilon", 1e-7)?,
                },
                0.001,
                None,
            ),
            "nadam" => (
                Kind::Nadam {
                    beta_1: f("beta_1", 0.9)?,
                    beta_2: f("beta_2", 0.999)?,
                    epsilon: f("epsilon", 1e-7)?,
                },
                0.001,
                None,
            ),
            other => return Err(Error(format!("unknown optimizer '{other}'"))),
        };
        let weight_decay = match spec.get("weight_decay") {
            None => default_wd,
            Some(_) => opt_f32(spec, "weight_decay")?,
        };
        let schedule = match spec.get("learning_rate") {
            Some(s @ Value::Object(_)) => Some(Schedule::from_spec(s)?),
            _ => None,
        };
        let learning_rate = match &schedule {
            Some(s) => s.at(0) as f32,
            None => f("learning_rate", default_lr)?,
        };
        Ok(Optimizer {
            kind,
            learning_rate,
            schedule,
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

    /// Creates the state for parameters of `sizes` (in order) if not there yet.
    pub fn ensure_slots(&mut self, sizes: impl ExactSizeIterator<Item = usize> + Clone) {
        let ns = self.n_slots();
        if self.slots.len() == sizes.len()
            && self
                .slots
                .iter()
                .zip(sizes.clone())
                .all(|(s, n)| s.len() == n * ns)
        {
            return;
        }
        let init = match self.kind {
            Kind::Adagrad {
                initial_accumulator_value,
                ..
            } => initial_accumulator_value,
            _ => 0.0,
        };
        self.slots = sizes.map(|n| vec![init; n * ns]).collect();
    }

    /// Slot `slot` of parameter `param` as a plain array (undoing the block
    /// layout), or None before the first step.
    pub fn slot_values(&self, param: usize, slot: usize) -> Option<Vec<f32>> {
        let ns = self.n_slots();
        let state = self.slots.get(param)?;
        if slot >= ns || state.is_empty() {
            return None;
        }
        let n = state.len() / ns;
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(SLOT_BLOCK) {
            let len = SLOT_BLOCK.min(n - start);
            let at = start * ns + slot * len;
            out.extend_from_slice(&state[at..at + len]);
        }
        Some(out)
    }

    /// Restores the state from plain arrays: `values[param][slot]`, each with
    /// `sizes[param]` elements.
    pub fn set_slot_values(&mut self, sizes: &[usize], values: &[Vec<Vec<f32>>]) -> Result<()> {
        let ns = self.n_slots();
        if values.len() != sizes.len() {
            crate::bail!(
                "optimizer state has {} parameters, the model {}",
                values.len(),
                sizes.len()
            );
        }
        let mut slots = Vec::with_capacity(sizes.len());
        for (i, (&n, v)) in sizes.iter().zip(values).enumerate() {
            if v.len() != ns || v.iter().any(|s| s.len() != n) {
                crate::bail!(
                    "optimizer state of parameter {i}: expected {ns} arrays of {n} values"
                );
            }
            let mut state = vec![0.0f32; n * ns];
            for start in (0..n).step_by(SLOT_BLOCK) {
                let len = SLOT_BLOCK.min(n - start);
                for (slot, values) in v.iter().enumerate() {
                    let at = start * ns + slot * len;
                    state[at..at + len].copy_from_slice(&values[start..start + len]);
                }
            }
            slots.push(state);
        }
        self.slots = slots;
        Ok(())
    }

    /// One update of every parameter from its `grad`.
    pub fn apply(&mut self, params: &mut [&mut Param]) {
        self.apply_from(params, None);
    }

    /// `apply` with each parameter's gradient given apart (`grads[k]` for
    /// `params[k]`, in place of its `grad`): a custom loop's gradients, read where they
    /// are instead of copied in first. A parameter that is not trained may have an
    /// empty one.
    pub fn apply_from(&mut self, params: &mut [&mut Param], grads: Option<&[&[f32]]>) {
        if let Some(g) = grads {
            assert_eq!(g.len(), params.len(), "one gradient per parameter");
        }
        self.ensure_slots(params.iter().map(|p| p.value.len()));
        if let Some(schedule) = &self.schedule {
            self.learning_rate = schedule.at(self.iterations) as f32;
        }
        let lr = self.learning_rate;
        // Keras applies at most one kind of clipping: clipnorm, else global_clipnorm, else clipvalue.
        let global_scale = self.global_clipnorm.filter(|&c| c > 0.0).map(|clip| {
            let norm = params
                .iter()
                .enumerate()
                .map(|(k, p)| match grads {
                    Some(g) => sum_squares(g[k]),
                    None => sum_squares(p.grad.as_slice().expect("contiguous")),
                })
                .sum::<f64>()
                .sqrt();
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
        let decay = self
            .weight_decay
            .filter(|&w| w != 0.0)
            .map_or(0.0, |w| w * lr);
        for (k, (param, slots)) in params.iter_mut().zip(self.slots.iter_mut()).enumerate() {
            if !param.is_trained() {
                continue; // moving statistics, or a frozen layer's weights
            }
            let Param { value, grad, .. } = &mut **param;
            let value = value.as_slice_mut().expect("contiguous");
            let grad = match grads {
                Some(g) => g[k],
                None => grad.as_slice().expect("contiguous"),
            };
            assert_eq!(grad.len(), value.len(), "a gradient per value");
            let scale = match (self.clipnorm.filter(|&c| c > 0.0), global_scale) {
                (Some(clip), _) => clip_scale(sum_squares(grad).sqrt(), clip),
                (None, Some(s)) => s,
                _ => 1.0,
            };
            let prep = Prep {
                scale,
                clip: clipvalue.unwrap_or(f32::INFINITY),
                decay,
            };
            if value.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 && ns == 0 {
                // (no state: zipped with the empty slots, the blocks would be skipped)
                value
                    .par_chunks_mut(SLOT_BLOCK)
                    .zip(grad.par_chunks(SLOT_BLOCK))
                    .for_each(|(p, g)| update_block(step, prep, p, g, &mut []));
            } else if value.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
                value
                    .par_chunks_mut(SLOT_BLOCK)
                    .zip(grad.par_chunks(SLOT_BLOCK))
                    .zip(slots.par_chunks_mut((SLOT_BLOCK * ns).max(1)))
                    .for_each(|((p, g), s)| update_block(step, prep, p, g, s));
            } else {
                for ((p, g), s) in value
                    .chunks_mut(SLOT_BLOCK)
                    .zip(grad.chunks(SLOT_BLOCK))
                    .zip(
                        slots
                            .chunks_mut((SLOT_BLOCK * ns).max(1))
                            .chain(std::iter::repeat_with(|| &mut [][..])),
                    )
                {
                    update_block(step, prep, p, g, s);
                }
            }
        }
        self.iterations += 1;
    }

    /// The per-element rule for this step, with the step's constants folded in.
    fn step_rule(&self, lr: f32) -> Step {
        let t = (self.iterations + 1) as f64;
        match self.kind {
            Kind::Sgd { momentum, nesterov } => Step::Sgd {
                lr,
                momentum,
                nesterov,
            },
            Kind::RmsProp {
                rho,
                momentum,
                epsilon,
                centered,
            } => Step::RmsProp {
                lr,
                rho,
                momentum,
                epsilon,
                centered,
            },
            Kind::Adam {
                beta_1,
                beta_2,
                epsilon,
                amsgrad,
            } => {
                let alpha = lr as f64 * (1.0 - (beta_2 as f64).powf(t)).sqrt()
                    / (1.0 - (beta_1 as f64).powf(t));
                Step::Adam {
                    alpha: alpha as f32,
                    beta_1,
                    beta_2,
                    epsilon,
                    amsgrad,
                }
            }
            Kind::Adagrad { epsilon, .. } => Step::Adagrad { lr, epsilon },
            Kind::Nadam {
                beta_1,
                beta_2,
                epsilon,
            } => {
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
    Sgd {
        lr: f32,
        momentum: f32,
        nesterov: bool,
    },
    RmsProp {
        lr: f32,
        rho: f32,
        momentum: f32,
        epsilon: f32,
        centered: bool,
    },
    Adam {
        alpha: f32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        amsgrad: bool,
    },
    Adagrad {
        lr: f32,
        epsilon: f32,
    },
    Nadam {
        lr: f32,
        beta_1: f32,
        beta_2: f32,
        epsilon: f32,
        m_coef: f32,
        g_coef: f32,
        v_coef: f32,
    },
}

/// Gradient preparation shared by every rule: clip scale, clip value, decoupled decay.
#[derive(Clone, Copy)]
struct Prep {
    scale: f32,
    clip: f32,
    /// weight_decay × learning rate (0 when off): p ← p − p·decay before the update.
    decay: f32,
}

/// One block of weights `p`, their gradients `g`, and their state `s`
/// (n_slots arrays of `p.len()` each, one after the other).
fn update_block(step: Step, prep: Prep, p: &mut [f32], g: &[f32], s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the wide version is compiled for.
            return unsafe { update_block_avx2(step, prep, p, g, s) };
        }
    }
    update_block_generic(step, prep, p, g, s)
}

/// The same code compiled for AVX2: wider vectors, identical results (no FMA
/// contraction happens without fast-math, and sqrt/div are exactly rounded).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn update_block_avx2(step: Step, prep: Prep, p: &mut [f32], g: &[f32], s: &mut [f32]) {
    update_block_generic(step, prep, p, g, s)
}

// Indexing several arrays by one index is the clearest form of these rules.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn update_block_generic(step: Step, prep: Prep, p: &mut [f32], g: &[f32], s: &mut [f32]) {
    let n = p.len();
    let Prep { scale, clip, decay } = prep;
    let g = &g[..n];
    let grad = |i: usize| (g[i] * scale).clamp(-clip, clip);
    match step {
        Step::Sgd {
            lr,
            momentum,
            nesterov,
        } => {
            if momentum != 0.0 {
                let m = &mut s[..n];
                for i in 0..n {
                    let gi = grad(i);
                    p[i] -= p[i] * decay;
                    let mi = momentum * m[i] - lr * gi;
                    m[i] = mi;
                    p[i] += if nesterov {
                        momentum * mi - lr * gi
                    } else {
                        mi
                    };
                }
            } else {
                for i in 0..n {
                    let gi = grad(i);
                    p[i] -= p[i] * decay;
                    p[i] -= lr * gi;
                }
            }
        }
        Step::RmsProp {
            lr,
            rho,
            momentum,
            epsilon,
            centered,
        } => {
            let (v, rest) = s.split_at_mut(n);
            let (mom, rest) = if momentum > 0.0 {
                rest.split_at_mut(n)
            } else {
                rest.split_at_mut(0)
            };
            let avg = if centered {
                &mut rest[..n]
            } else {
                &mut rest[..0]
            };
            for i in 0..n {
                let gi = grad(i);
                p[i] -= p[i] * decay;
                let vi = rho * v[i] + (1.0 - rho) * gi * gi;
                v[i] = vi;
                let denominator = if centered {
                    let a = rho * avg[i] + (1.0 - rho) * gi;
                    avg[i] = a;
                    vi - a * a + epsilon
                } else {
                    vi + epsilon
                };
                let increment = lr * gi / denominator.sqrt();
                if momentum > 0.0 {
                    mom[i] = momentum * mom[i] + increment;
                    p[i] -= mom[i];
                } else {
                    p[i] -= increment;
                }
            }
        }
        Step::Adam {
            alpha,
            beta_1,
            beta_2,
            epsilon,
            amsgrad,
        } => {
            let (m, rest) = s.split_at_mut(n);
            let (v, rest) = rest.split_at_mut(n);
            if amsgrad {
                let vhat = &mut rest[..n];
                for i in 0..n {
                    let gi = grad(i);
                    p[i] -= p[i] * decay;
                    m[i] += (gi - m[i]) * (1.0 - beta_1);
                    v[i] += (gi * gi - v[i]) * (1.0 - beta_2);
                    vhat[i] = vhat[i].max(v[i]);
                    p[i] -= m[i] * alpha / (vhat[i].sqrt() + epsilon);
                }
            } else {
                for i in 0..n {
                    let gi = grad(i);
                    p[i] -= p[i] * decay;
                    m[i] += (gi - m[i]) * (1.0 - beta_1);
                    v[i] += (gi * gi - v[i]) * (1.0 - beta_2);
                    p[i] -= m[i] * alpha / (v[i].sqrt() + epsilon);
                }
            }
        }
        Step::Adagrad { lr, epsilon } => {
            let acc = &mut s[..n];
            for i in 0..n {
                let gi = grad(i);
                p[i] -= p[i] * decay;
                acc[i] += gi * gi;
                p[i] -= lr * gi / (acc[i] + epsilon).sqrt();
            }
        }
        Step::Nadam {
            lr,
            beta_1,
            beta_2,
            epsilon,
            m_coef,
            g_coef,
            v_coef,
        } => {
            let (m, rest) = s.split_at_mut(n);
            let v = &mut rest[..n];
            for i in 0..n {
                let gi = grad(i);
                p[i] -= p[i] * decay;
                m[i] += (gi - m[i]) * (1.0 - beta_1);
                v[i] += (gi * gi - v[i]) * (1.0 - beta_2);
                let m_hat = m_coef * m[i] + g_coef * gi;
                let v_hat = v[i] * v_coef;
                p[i] -= m_hat * lr / (v_hat.sqrt() + epsilon);
            }
        }
    }
}
