//! Learning-rate schedules with Keras 3's formulas, evaluated in f64 from the
//! optimizer step (0 before the first update). The Python classes in
//! `ferrax.optimizers.schedules` compute the same formulas; their `_core_spec()`
//! is what `Schedule::from_spec` reads.

use crate::error::{Error, Result};
use serde_json::Value;
use std::f64::consts::PI;

#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// `initial * decay_rate^(step / decay_steps)` (exponent floored if `staircase`).
    ExponentialDecay {
        initial_learning_rate: f64,
        decay_steps: f64,
        decay_rate: f64,
        staircase: bool,
    },
    /// `initial / (1 + decay_rate * step / decay_steps)` (ratio floored if `staircase`).
    InverseTimeDecay {
        initial_learning_rate: f64,
        decay_steps: f64,
        decay_rate: f64,
        staircase: bool,
    },
    /// `values[i]` for the first `i` with `step <= boundaries[i]`, else the last value.
    PiecewiseConstantDecay {
        boundaries: Vec<f64>,
        values: Vec<f64>,
    },
    /// `(initial - end) * (1 - step / decay_steps)^power + end`, step clamped to
    /// `decay_steps`, or with `cycle` the period stretched to the next multiple.
    PolynomialDecay {
        initial_learning_rate: f64,
        decay_steps: f64,
        end_learning_rate: f64,
        power: f64,
        cycle: bool,
    },
    /// Optional linear warmup to `warmup_target`, then cosine decay to `alpha` times it.
    CosineDecay {
        initial_learning_rate: f64,
        decay_steps: f64,
        alpha: f64,
        warmup_target: Option<f64>,
        warmup_steps: f64,
    },
    /// Cosine decay with warm restarts (SGDR).
    CosineDecayRestarts {
        initial_learning_rate: f64,
        first_decay_steps: f64,
        t_mul: f64,
        m_mul: f64,
        alpha: f64,
    },
}

/// Reads a finite number `key` of a schedule spec; `default` when absent or null
/// (`None` means the argument is required).
fn number(spec: &Value, schedule: &str, key: &str, default: Option<f64>) -> Result<f64> {
    match spec.get(key) {
        None | Some(Value::Null) => default.ok_or_else(|| {
            Error(format!(
                "learning rate schedule '{schedule}' needs argument '{key}'"
            ))
        }),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(Error(format!(
                "learning rate schedule '{schedule}': '{key}' must be a finite number, got {v}"
            ))),
        },
    }
}

fn flag(spec: &Value, schedule: &str, key: &str) -> Result<bool> {
    match spec.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| {
            Error(format!(
                "learning rate schedule '{schedule}': '{key}' must be true or false, got {v}"
            ))
        }),
    }
}

fn numbers(spec: &Value, schedule: &str, key: &str) -> Result<Vec<f64>> {
    let bad = || {
        Error(format!(
            "learning rate schedule '{schedule}': '{key}' must be a list of finite numbers, \
             got {}",
            spec.get(key).unwrap_or(&Value::Null)
        ))
    };
    spec.get(key)
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|v| v.as_f64().filter(|x| x.is_finite()).ok_or_else(bad))
        .collect()
}

fn check(ok: bool, schedule: &str, key: &str, rule: &str, value: f64) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error(format!(
            "learning rate schedule '{schedule}': '{key}' must be {rule}, got {value}"
        )))
    }
}

/// `0.5 * (1 + cos(pi * fraction))`: 1 at the start of a period, 0 at its end.
fn cosine(fraction: f64) -> f64 {
    0.5 * (1.0 + (PI * fraction).cos())
}

/// (period index, completed fraction of that period) for `fraction` = step
/// divided by the first period's length, periods growing by `t_mul`; `None`
/// when shrinking periods (`t_mul < 1`) have all ended.
fn restart(fraction: f64, t_mul: f64) -> Option<(f64, f64)> {
    if t_mul == 1.0 {
        let i = fraction.floor();
        return Some((i, fraction - i));
    }
    let x = 1.0 - fraction * (1.0 - t_mul);
    if x <= 0.0 {
        return None;
    }
    // Period i starts at (1 - t^i) / (1 - t). Rounding can put the closed form
    // one period off at an exact restart; step it onto the right one.
    let start = |k: f64| (1.0 - t_mul.powf(k)) / (1.0 - t_mul);
    let mut i = (x.ln() / t_mul.ln()).floor();
    if i > 0.0 && start(i) > fraction {
        i -= 1.0;
    } else if start(i + 1.0) <= fraction {
        i += 1.0;
    }
    Some((i, (fraction - start(i)) / t_mul.powf(i)))
}

impl Schedule {
    /// From `{"name": "exponential_decay", "initial_learning_rate": ..., ...}`
    /// (the Python schedule's `_core_spec()`); optional arguments take Keras's
    /// defaults. Arguments are validated as the Python side does.
    pub fn from_spec(spec: &Value) -> Result<Schedule> {
        let name = spec.get("name").and_then(Value::as_str).ok_or_else(|| {
            Error(format!(
                "learning rate schedule spec needs a 'name', got {spec}"
            ))
        })?;
        let num = |key: &str, default: Option<f64>| number(spec, name, key, default);
        let non_negative = |key: &str, x: f64| check(x >= 0.0, name, key, ">= 0", x);
        let positive = |key: &str, x: f64| check(x > 0.0, name, key, "> 0", x);
        let fraction =
            |key: &str, x: f64| check((0.0..=1.0).contains(&x), name, key, "in [0, 1]", x);
        let schedule = match name {
            "exponential_decay" | "inverse_time_decay" => {
                let initial_learning_rate = num("initial_learning_rate", None)?;
                let decay_steps = num("decay_steps", None)?;
                let decay_rate = num("decay_rate", None)?;
                non_negative("initial_learning_rate", initial_learning_rate)?;
                positive("decay_steps", decay_steps)?;
                non_negative("decay_rate", decay_rate)?;
                let staircase = flag(spec, name, "staircase")?;
                if name == "exponential_decay" {
                    Schedule::ExponentialDecay {
                        initial_learning_rate,
                        decay_steps,
                        decay_rate,
                        staircase,
                    }
                } else {
                    Schedule::InverseTimeDecay {
                        initial_learning_rate,
                        decay_steps,
                        decay_rate,
                        staircase,
                    }
                }
            }
            "piecewise_constant_decay" => {
                let boundaries = numbers(spec, name, "boundaries")?;
                let values = numbers(spec, name, "values")?;
                if values.len() != boundaries.len() + 1 {
                    return Err(Error(format!(
                        "learning rate schedule '{name}': 'values' must have one more element \
                         than 'boundaries', got {} boundaries and {} values",
                        boundaries.len(),
                        values.len()
                    )));
                }
                if boundaries.windows(2).any(|w| w[1] <= w[0]) {
                    return Err(Error(format!(
                        "learning rate schedule '{name}': 'boundaries' must be strictly \
                         increasing, got {boundaries:?}"
                    )));
                }
                for &v in &values {
                    non_negative("values", v)?;
                }
                Schedule::PiecewiseConstantDecay { boundaries, values }
            }
            "polynomial_decay" => {
                let initial_learning_rate = num("initial_learning_rate", None)?;
                let decay_steps = num("decay_steps", None)?;
                let end_learning_rate = num("end_learning_rate", Some(0.0001))?;
                let power = num("power", Some(1.0))?;
                non_negative("initial_learning_rate", initial_learning_rate)?;
                positive("decay_steps", decay_steps)?;
                non_negative("end_learning_rate", end_learning_rate)?;
                non_negative("power", power)?;
                Schedule::PolynomialDecay {
                    initial_learning_rate,
                    decay_steps,
                    end_learning_rate,
                    power,
                    cycle: flag(spec, name, "cycle")?,
                }
            }
            "cosine_decay" => {
                let initial_learning_rate = num("initial_learning_rate", None)?;
                let decay_steps = num("decay_steps", None)?;
                let alpha = num("alpha", Some(0.0))?;
                let warmup_steps = num("warmup_steps", Some(0.0))?;
                non_negative("initial_learning_rate", initial_learning_rate)?;
                positive("decay_steps", decay_steps)?;
                fraction("alpha", alpha)?;
                non_negative("warmup_steps", warmup_steps)?;
                let warmup_target = match spec.get("warmup_target") {
                    None | Some(Value::Null) => None,
                    Some(_) => {
                        let t = num("warmup_target", None)?;
                        non_negative("warmup_target", t)?;
                        Some(t)
                    }
                };
                Schedule::CosineDecay {
                    initial_learning_rate,
                    decay_steps,
                    alpha,
                    warmup_target,
                    warmup_steps,
                }
            }
            "cosine_decay_restarts" => {
                let initial_learning_rate = num("initial_learning_rate", None)?;
                let first_decay_steps = num("first_decay_steps", None)?;
                let t_mul = num("t_mul", Some(2.0))?;
                let m_mul = num("m_mul", Some(1.0))?;
                let alpha = num("alpha", Some(0.0))?;
                non_negative("initial_learning_rate", initial_learning_rate)?;
                positive("first_decay_steps", first_decay_steps)?;
                positive("t_mul", t_mul)?;
                non_negative("m_mul", m_mul)?;
                fraction("alpha", alpha)?;
                Schedule::CosineDecayRestarts {
                    initial_learning_rate,
                    first_decay_steps,
                    t_mul,
                    m_mul,
                    alpha,
                }
            }
            other => {
                return Err(Error(format!(
                    "unknown learning rate schedule '{other}'; expected one of \
                     exponential_decay, inverse_time_decay, piecewise_constant_decay, \
                     polynomial_decay, cosine_decay, cosine_decay_restarts"
                )))
            }
        };
        Ok(schedule)
    }

    /// The learning rate for optimizer step `step` (0 for the first update).
    pub fn at(&self, step: u64) -> f64 {
        let s = step as f64;
        match *self {
            Schedule::ExponentialDecay {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let p = s / decay_steps;
                let p = if staircase { p.floor() } else { p };
                initial_learning_rate * decay_rate.powf(p)
            }
            Schedule::InverseTimeDecay {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let p = s / decay_steps;
                let p = if staircase { p.floor() } else { p };
                initial_learning_rate / (1.0 + decay_rate * p)
            }
            Schedule::PiecewiseConstantDecay {
                ref boundaries,
                ref values,
            } => {
                let i = boundaries
                    .iter()
                    .position(|&b| s <= b)
                    .unwrap_or(boundaries.len());
                values[i]
            }
            Schedule::PolynomialDecay {
                initial_learning_rate,
                decay_steps,
                end_learning_rate,
                power,
                cycle,
            } => {
                let (s, steps) = if cycle {
                    let m = if step == 0 {
                        1.0
                    } else {
                        (s / decay_steps).ceil()
                    };
                    (s, decay_steps * m)
                } else {
                    (s.min(decay_steps), decay_steps)
                };
                (initial_learning_rate - end_learning_rate) * (1.0 - s / steps).powf(power)
                    + end_learning_rate
            }
            Schedule::CosineDecay {
                initial_learning_rate,
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
            } => {
                let decay =
                    |s: f64, peak: f64| peak * ((1.0 - alpha) * cosine(s / decay_steps) + alpha);
                match warmup_target {
                    None => decay(s.min(decay_steps), initial_learning_rate),
                    Some(target) => {
                        let s = s.min(decay_steps + warmup_steps);
                        if s < warmup_steps {
                            (target - initial_learning_rate) * (s / warmup_steps)
                                + initial_learning_rate
                        } else {
                            decay(s - warmup_steps, target)
                        }
                    }
                }
            }
            Schedule::CosineDecayRestarts {
                initial_learning_rate,
                first_decay_steps,
                t_mul,
                m_mul,
                alpha,
            } => match restart(s / first_decay_steps, t_mul) {
                None => initial_learning_rate * alpha,
                Some((i, fraction)) => {
                    let decayed = (1.0 - alpha) * m_mul.powf(i) * cosine(fraction) + alpha;
                    initial_learning_rate * decayed
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sched(spec: Value) -> Schedule {
        Schedule::from_spec(&spec).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-300) || a == b
    }

    #[test]
    fn exponential_decay() {
        let s = sched(
            json!({"name": "exponential_decay", "initial_learning_rate": 0.1,
                             "decay_steps": 10, "decay_rate": 0.5}),
        );
        assert_eq!(s.at(0), 0.1);
        assert!(close(s.at(10), 0.05));
        assert!(close(s.at(5), 0.1 * 0.5f64.sqrt()));
        let st = sched(
            json!({"name": "exponential_decay", "initial_learning_rate": 0.1,
                              "decay_steps": 10, "decay_rate": 0.5, "staircase": true}),
        );
        assert_eq!(st.at(9), 0.1);
        assert!(close(st.at(10), 0.05));
        assert!(close(st.at(29), 0.025));
    }

    #[test]
    fn inverse_time_decay() {
        let s = sched(
            json!({"name": "inverse_time_decay", "initial_learning_rate": 1.0,
                             "decay_steps": 4.0, "decay_rate": 0.5}),
        );
        assert_eq!(s.at(0), 1.0);
        assert!(close(s.at(2), 1.0 / 1.25));
        let st = sched(
            json!({"name": "inverse_time_decay", "initial_learning_rate": 1.0,
                              "decay_steps": 4, "decay_rate": 0.5, "staircase": true}),
        );
        assert_eq!(st.at(3), 1.0);
        assert!(close(st.at(4), 1.0 / 1.5));
        assert!(close(st.at(9), 1.0 / 2.0));
    }

    #[test]
    fn piecewise_constant_boundaries_are_inclusive() {
        let s = sched(
            json!({"name": "piecewise_constant_decay", "boundaries": [3, 7],
                             "values": [1.0, 0.5, 0.1]}),
        );
        let got: Vec<f64> = (0..10).map(|k| s.at(k)).collect();
        assert_eq!(got, [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1]);
        let constant = sched(json!({"name": "piecewise_constant_decay", "boundaries": [],
                                    "values": [0.3]}));
        assert_eq!(constant.at(12345), 0.3);
    }

    #[test]
    fn polynomial_decay_clamps_or_cycles() {
        let s = sched(
            json!({"name": "polynomial_decay", "initial_learning_rate": 1.0,
                             "decay_steps": 10, "end_learning_rate": 0.0, "power": 2.0}),
        );
        assert_eq!(s.at(0), 1.0);
        assert!(close(s.at(5), 0.25));
        assert_eq!(s.at(10), 0.0);
        assert_eq!(s.at(100), 0.0);
        let d = sched(
            json!({"name": "polynomial_decay", "initial_learning_rate": 0.1,
                             "decay_steps": 10}),
        );
        assert!(close(d.at(10), 0.0001)); // Keras's default end_learning_rate
        let c = sched(
            json!({"name": "polynomial_decay", "initial_learning_rate": 1.0,
                             "decay_steps": 10, "end_learning_rate": 0.0, "cycle": true}),
        );
        assert_eq!(c.at(0), 1.0);
        assert_eq!(c.at(10), 0.0);
        // step 15: period 20, fraction 0.75
        assert!(close(c.at(15), 0.25));
    }

    #[test]
    fn cosine_decay_with_and_without_warmup() {
        let s = sched(json!({"name": "cosine_decay", "initial_learning_rate": 2.0,
                             "decay_steps": 10, "alpha": 0.1}));
        assert_eq!(s.at(0), 2.0);
        assert!(close(s.at(5), 2.0 * (0.9 * 0.5 + 0.1)));
        assert!(close(s.at(10), 0.2));
        assert!(close(s.at(50), 0.2));
        let w = sched(json!({"name": "cosine_decay", "initial_learning_rate": 0.0,
                             "decay_steps": 10, "warmup_target": 1.0, "warmup_steps": 4}));
        assert_eq!(w.at(0), 0.0);
        assert!(close(w.at(1), 0.25));
        assert_eq!(w.at(4), 1.0);
        assert!(close(w.at(9), 0.5));
        assert!(w.at(14).abs() < 1e-15);
        assert!(w.at(1000).abs() < 1e-15);
    }

    #[test]
    fn cosine_decay_restarts_matches_explicit_periods() {
        for &(t_mul, m_mul) in &[(2.0, 1.0), (1.0, 0.5), (3.0, 0.7), (1.5, 1.0), (0.5, 1.0)] {
            let s = sched(
                json!({"name": "cosine_decay_restarts", "initial_learning_rate": 1.0,
                                 "first_decay_steps": 10, "t_mul": t_mul, "m_mul": m_mul,
                                 "alpha": 0.05}),
            );
            // Walk the periods explicitly.
            let (mut start, mut len, mut peak) = (0.0f64, 10.0f64, 1.0f64);
            for step in 0..1300u64 {
                let x = step as f64;
                while len > 1e-9 && x >= start + len {
                    start += len;
                    len *= t_mul;
                    peak *= m_mul;
                }
                let want = if len <= 1e-9 || x >= 10.0 / (1.0 - t_mul).max(0.0) {
                    0.05
                } else {
                    0.95 * peak * cosine((x - start) / len) + 0.05
                };
                let got = s.at(step);
                assert!(
                    (got - want).abs() < 1e-9,
                    "t_mul {t_mul} m_mul {m_mul} step {step}: got {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn defaults_and_errors() {
        let s = sched(
            json!({"name": "cosine_decay_restarts", "initial_learning_rate": 1.0,
                             "first_decay_steps": 5}),
        );
        assert_eq!(
            s,
            Schedule::CosineDecayRestarts {
                initial_learning_rate: 1.0,
                first_decay_steps: 5.0,
                t_mul: 2.0,
                m_mul: 1.0,
                alpha: 0.0
            }
        );
        let err = |spec: Value| Schedule::from_spec(&spec).unwrap_err().0;
        assert!(err(
            json!({"name": "exponential_decay", "initial_learning_rate": 0.1,
                           "decay_steps": 0, "decay_rate": 0.5})
        )
        .contains("'decay_steps' must be > 0"));
        assert!(err(
            json!({"name": "exponential_decay", "initial_learning_rate": 0.1,
                           "decay_rate": 0.5})
        )
        .contains("needs argument 'decay_steps'"));
        assert!(err(
            json!({"name": "piecewise_constant_decay", "boundaries": [1, 2],
                           "values": [1.0, 0.5]})
        )
        .contains("one more element"));
        assert!(err(
            json!({"name": "piecewise_constant_decay", "boundaries": [2, 2],
                           "values": [1.0, 0.5, 0.1]})
        )
        .contains("strictly increasing"));
        assert!(
            err(json!({"name": "cosine_decay", "initial_learning_rate": 0.1,
                           "decay_steps": 10, "alpha": 2.0}))
            .contains("'alpha' must be in [0, 1]")
        );
        assert!(err(
            json!({"name": "polynomial_decay", "initial_learning_rate": "x",
                           "decay_steps": 10})
        )
        .contains("'initial_learning_rate' must be a finite number"));
        assert!(err(
            json!({"name": "exponential_decay", "initial_learning_rate": 0.1,
                           "decay_steps": 10, "decay_rate": 0.5, "staircase": 1})
        )
        .contains("'staircase' must be true or false"));
        assert!(err(json!({"name": "step_decay"})).contains("unknown learning rate schedule"));
        assert!(err(json!({"initial_learning_rate": 0.1})).contains("needs a 'name'"));
    }
}
