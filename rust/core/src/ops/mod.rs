//! Ops: the functions of `ferrax.ops` (add, matmul, sum, reshape, ...). Each family
//! keeps its shape rule, forward and backward together in one file. The same op
//! object runs eagerly (on arrays, from Python) and inside a model's graph (an
//! `Op` node, see `layers/op.rs`), so both give bitwise the same numbers.
//!
//! Shapes are full shapes, NumPy style. An operand is either *batched* (a model's
//! activations: `rows` samples along a leading batch axis that the shape leaves
//! out) or not (a weight, a constant, an eager array). Axis arguments count the
//! batch axis (axis 0 of a batched operand), as Keras's do.

mod dims;
mod elementwise;
mod linalg;
mod loss;
mod nn;
mod reduce;
mod shape;
mod strided;
#[cfg(test)]
mod testutil;

pub use dims::{Dims, MAX_RANK};

use crate::error::{Error, Result};
use serde_json::Value;

/// One input or the output of an op: its shape without the batch axis when
/// `batched`, else its whole shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operand {
    pub shape: Vec<usize>,
    pub batched: bool,
}

impl Operand {
    pub fn batched(shape: &[usize]) -> Self {
        Operand {
            shape: shape.to_vec(),
            batched: true,
        }
    }

    pub fn fixed(shape: &[usize]) -> Self {
        Operand {
            shape: shape.to_vec(),
            batched: false,
        }
    }

    /// Elements per sample when batched, else in all.
    pub fn size(&self) -> usize {
        self.shape.iter().product()
    }

    /// Elements for a batch of `rows` samples.
    pub fn len(&self, rows: usize) -> usize {
        if self.batched {
            rows * self.size()
        } else {
            self.size()
        }
    }

    pub fn is_empty(&self, rows: usize) -> bool {
        self.len(rows) == 0
    }

    /// The full shape for `rows` samples (the batch axis first when batched).
    pub fn dims(&self, rows: usize) -> Dims {
        if self.batched {
            Dims::batched(rows, &self.shape)
        } else {
            Dims::new(&self.shape)
        }
    }

    /// The rank counting the batch axis.
    pub fn rank(&self) -> usize {
        self.shape.len() + usize::from(self.batched)
    }

    /// How errors show the shape: NumPy style, `None` for the batch axis.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::with_capacity(self.rank());
        if self.batched {
            parts.push("None".into());
        }
        parts.extend(self.shape.iter().map(|d| d.to_string()));
        if parts.len() == 1 {
            format!("({},)", parts[0])
        } else {
            format!("({})", parts.join(", "))
        }
    }
}

/// An op built for fixed operand shapes. `&mut self` lets an op keep scratch
/// buffers between batches (no allocation in the batch loop).
pub trait Op: Send + Sync {
    /// The result's shape (and whether it is batched).
    fn output(&self) -> &Operand;

    /// y ← op(xs) for `rows` samples (`rows` is ignored when nothing is batched).
    /// Every slice has exactly its operand's `len(rows)` elements.
    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize);

    /// Given the forward's inputs and result and the result's gradient `dy`,
    /// write (overwrite, never add) the gradient of every input k whose
    /// `dxs[k]` is Some. An input the op is not differentiable in (a comparison,
    /// argmax, the ids of one_hot) gets zeros.
    fn backward(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    );

    /// Whether the result is its only input with another shape, same data in
    /// the same order (a graph then lets both share one buffer and never calls it).
    fn is_reshape(&self) -> bool {
        false
    }
}

/// Builds op `name` with arguments `attrs` (a JSON object, `{}` when none)
/// for inputs shaped as `inputs`. Errors name the op and every input's shape.
pub fn build(name: &str, attrs: &Value, inputs: &[Operand]) -> Result<Box<dyn Op>> {
    check_ranks(inputs).map_err(|e| with_shapes(name, inputs, e))?;
    let found = elementwise::build(name, attrs, inputs)
        .or_else(|| reduce::build(name, attrs, inputs))
        .or_else(|| linalg::build(name, attrs, inputs))
        .or_else(|| shape::build(name, attrs, inputs))
        .or_else(|| nn::build(name, attrs, inputs))
        .or_else(|| loss::build(name, attrs, inputs));
    let Some(found) = found else {
        crate::bail!("unknown op '{name}'");
    };
    let checked = found.and_then(|op| {
        let out = op.output();
        if out.rank() > MAX_RANK {
            crate::bail!(
                "the result {} has rank {}, above the most supported ({MAX_RANK})",
                out.describe(),
                out.rank()
            );
        }
        Ok(op)
    });
    checked.map_err(|e| with_shapes(name, inputs, e))
}

/// Every input's rank within MAX_RANK (the batch loop keeps shapes inline).
fn check_ranks(inputs: &[Operand]) -> Result<()> {
    for x in inputs {
        if x.rank() > MAX_RANK {
            crate::bail!(
                "an input of rank {} is above the most supported ({MAX_RANK})",
                x.rank()
            );
        }
    }
    Ok(())
}

/// Errors unless `inputs` holds exactly `n` operands.
pub(crate) fn expect_inputs(name: &str, inputs: &[Operand], n: usize) -> Result<()> {
    if inputs.len() != n {
        let s = if n == 1 { "" } else { "s" };
        crate::bail!("{name} takes {n} input{s}, got {}", inputs.len());
    }
    Ok(())
}

/// Every shape as `describe` shows it, joined by " with ".
pub(crate) fn describe_all(inputs: &[&Operand]) -> String {
    let all: Vec<String> = inputs.iter().map(|x| x.describe()).collect();
    all.join(" with ")
}

/// The NumPy broadcast of full shapes (right-aligned, each axis equal or 1).
/// The batch axis, whose size is only known at run time, may only meet other
/// batch axes or fixed axes of size 1: a batched input must have the result's
/// full rank, and a fixed input may reach axis 0 only with size 1.
pub(crate) fn broadcast(inputs: &[&Operand]) -> Result<Operand> {
    let rank = inputs.iter().map(|x| x.rank()).max().unwrap_or(0);
    let batched = inputs.iter().any(|x| x.batched);
    let fail = |why: &str| Error(format!("cannot broadcast {}{why}", describe_all(inputs)));
    let mut out = vec![1usize; rank];
    for x in inputs {
        if batched && x.batched && x.rank() != rank {
            return Err(fail(
                ": a batched operand must have the result's rank, its batch axis first",
            ));
        }
        let pad = rank - x.rank();
        let full = x.dims(1);
        for (i, &d) in full.as_slice().iter().enumerate() {
            let axis = pad + i;
            if batched && axis == 0 {
                if !x.batched && d != 1 {
                    return Err(fail(
                        ": a fixed operand may reach the batch axis only with size 1",
                    ));
                }
                continue;
            }
            let o = &mut out[axis];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(fail(""));
            }
        }
    }
    Ok(if batched {
        Operand::batched(&out[1..])
    } else {
        Operand::fixed(&out)
    })
}

/// A number attribute, `default` when absent.
pub(crate) fn attr_f32(attrs: &Value, key: &str, default: f32) -> Result<f32> {
    match attr(attrs, key) {
        Value::Null => Ok(default),
        v => v
            .as_f64()
            .map(|f| f as f32)
            .ok_or_else(|| Error(format!("'{key}' must be a number, got {v}"))),
    }
}

/// A boolean attribute, `default` when absent.
pub(crate) fn attr_bool(attrs: &Value, key: &str, default: bool) -> Result<bool> {
    match attr(attrs, key) {
        Value::Null => Ok(default),
        v => v
            .as_bool()
            .ok_or_else(|| Error(format!("'{key}' must be true or false, got {v}"))),
    }
}

/// An integer attribute, None when absent.
pub(crate) fn attr_int(attrs: &Value, key: &str) -> Result<Option<i64>> {
    match attr(attrs, key) {
        Value::Null => Ok(None),
        v => as_int(v)
            .map(Some)
            .ok_or_else(|| Error(format!("'{key}' must be an integer, got {v}"))),
    }
}

/// A list-of-integers attribute, None when absent.
pub(crate) fn attr_ints(attrs: &Value, key: &str) -> Result<Option<Vec<i64>>> {
    match attr(attrs, key) {
        Value::Null => Ok(None),
        v => as_ints(v)
            .map(Some)
            .ok_or_else(|| Error(format!("'{key}' must be a list of integers, got {v}"))),
    }
}

/// A JSON integer (also a float with no fraction, as Python may send `2.0`).
pub(crate) fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

pub(crate) fn as_ints(v: &Value) -> Option<Vec<i64>> {
    v.as_array()?.iter().map(as_int).collect()
}

/// `e` prefixed with the op's name and its inputs' shapes, unless it has them.
fn with_shapes(name: &str, inputs: &[Operand], e: Error) -> Error {
    if e.0.starts_with(name) {
        return e;
    }
    let shapes: Vec<String> = inputs.iter().map(Operand::describe).collect();
    Error(format!(
        "{name} on inputs of shape {}: {}",
        shapes.join(" and "),
        e.0
    ))
}

/// `attrs[key]`, or Null when absent.
pub(crate) fn attr<'a>(attrs: &'a Value, key: &str) -> &'a Value {
    attrs.get(key).unwrap_or(&Value::Null)
}

/// A Keras axis (negative from the end) as an index into a shape of `rank` axes.
pub(crate) fn resolve_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        crate::bail!("axis {axis} is out of range for rank {rank}");
    }
    Ok(a as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_ops_and_ranks_above_the_limit_are_errors() {
        let err = build("frobnicate", &json!({}), &[]).err().unwrap().0;
        assert_eq!(err, "unknown op 'frobnicate'");
        let big = Operand::batched(&[1; MAX_RANK]);
        let err = build("exp", &json!({}), &[big]).err().unwrap().0;
        assert!(err.contains("rank 9 is above"), "{err}");
        let top = Operand::fixed(&[1; MAX_RANK]);
        let err = build("one_hot", &json!({"num_classes": 2}), &[top])
            .err()
            .unwrap()
            .0;
        assert!(err.starts_with("one_hot on inputs of shape (1, 1, 1, 1, 1, 1, 1, 1): the result"));
    }
}
