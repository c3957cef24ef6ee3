//! InputSlice: a part of a flat row per sample, in its own shape. It takes one
//! input of a model with several out of the row they travel in side by side,
//! and one output of a layer with several (a recurrent layer's output and
//! states) out of the row that layer writes. Its gradient is dy on its part
//! and zero elsewhere (the parts' gradients add up where a row has readers).

use super::{usize_field, Ctx, Layer, MaskFlow};
use crate::error::{Error, Result};
use crate::parallel::for_each_row;
use serde_json::Value;

pub struct InputSlice {
    /// The part is a sequence that keeps the row's time-step mask (a recurrent
    /// layer's returned sequence beside its states).
    keep_mask: bool,
    offset: usize,
    len: usize,
    width: usize,
    output_shape: Vec<usize>,
}

impl InputSlice {
    /// From `{"offset": o, "shape": [...]}`; a negative offset counts from the row's
    /// end, and one axis of the shape may be null: the length that takes the rest
    /// of the row but its last `rest` values (a sequence of any length before a
    /// recurrent layer's states).
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let width: usize = input_shape.iter().product();
        let bad_shape = || {
            Error(format!(
                "{name}: 'shape' must be positive integers (one may be null), got {}",
                config["shape"]
            ))
        };
        let dims: Vec<Option<usize>> = config["shape"]
            .as_array()
            .ok_or_else(bad_shape)?
            .iter()
            .map(|d| match d {
                Value::Null => Ok(None),
                d => d
                    .as_u64()
                    .map(|d| d as usize)
                    .filter(|&d| d > 0)
                    .map(Some)
                    .ok_or_else(bad_shape),
            })
            .collect::<Result<_>>()?;
        let offset = match config["offset"].as_i64() {
            Some(o) if o < 0 => width.checked_sub(o.unsigned_abs() as usize),
            Some(o) => Some(o as usize),
            None => None,
        }
        .ok_or_else(|| {
            Error(format!(
                "{name}: 'offset' must be an integer within the row of {width} values, got {}",
                config["offset"]
            ))
        })?;
        let rest = match config.get("rest") {
            None | Some(Value::Null) => 0,
            Some(_) => usize_field(config, name, "rest")?,
        };
        let known: usize = dims.iter().flatten().product();
        let shape: Vec<usize> = match dims.iter().filter(|d| d.is_none()).count() {
            0 => dims.iter().flatten().copied().collect(),
            1 => {
                let free = width.saturating_sub(offset + rest);
                if known == 0 || free % known != 0 || free == 0 {
                    crate::bail!(
                        "{name}: {free} values do not make whole rows of {known} for the \
                         axis of unknown length"
                    );
                }
                dims.iter().map(|d| d.unwrap_or(free / known)).collect()
            }
            _ => return Err(bad_shape()),
        };
        let len: usize = shape.iter().product();
        if input_shape.len() != 1 || offset + len > width {
            crate::bail!(
                "{name}: values {offset}..{} do not lie within the packed inputs of \
                 per-sample shape {input_shape:?}",
                offset + len
            );
        }
        Ok(InputSlice {
            keep_mask: config["keep_mask"].as_bool().unwrap_or(false),
            offset,
            len,
            width,
            output_shape: shape,
        })
    }
}

impl Layer for InputSlice {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn mask_flow(&self) -> MaskFlow {
        if self.keep_mask {
            MaskFlow::Keep
        } else {
            MaskFlow::Drop
        }
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx<'_>) {
        let (offset, width) = (self.offset, self.width);
        for_each_row(y, self.len, |r, row| {
            row.copy_from_slice(&x[r * width + offset..][..row.len()]);
        });
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        let Some(dx) = dx else { return };
        let (offset, len) = (self.offset, self.len);
        for_each_row(&mut dx[..rows * self.width], self.width, |r, row| {
            row.fill(0.0);
            row[offset..offset + len].copy_from_slice(&dy[r * len..(r + 1) * len]);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn copies_its_part_of_each_row() {
        let mut s =
            InputSlice::build("in_b", &json!({"offset": 2, "shape": [1, 3]}), &[6]).unwrap();
        assert_eq!(s.output_shape(), &[1, 3]);
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut y = vec![0.0; 6];
        let ctx = Ctx::for_tests(false);
        s.forward(&x, &mut y, 2, &ctx);
        assert_eq!(y, vec![2.0, 3.0, 4.0, 8.0, 9.0, 10.0]);
        let mut dx = vec![f32::NAN; 12];
        s.backward(&x, &y, &mut y.clone(), Some(&mut dx), 2);
        let mut want = vec![0.0; 12];
        want[2..5].copy_from_slice(&y[..3]);
        want[8..11].copy_from_slice(&y[3..]);
        assert_eq!(dx, want);
        // [sequence of any length (rows of 2), h (2)]: the parts from either end
        let seq = InputSlice::build(
            "s",
            &json!({"offset": 0, "shape": [null, 2], "rest": 2}),
            &[8],
        )
        .unwrap();
        assert_eq!(seq.output_shape(), &[3, 2]);
        let h = InputSlice::build("h", &json!({"offset": -2, "shape": [2]}), &[8]).unwrap();
        assert_eq!((h.offset, h.len), (6, 2));
        let err = InputSlice::build("in_c", &json!({"offset": 4, "shape": [3]}), &[6])
            .err()
            .unwrap();
        assert!(
            err.0.contains("in_c") && err.0.contains("4..7"),
            "{}",
            err.0
        );
    }
}
