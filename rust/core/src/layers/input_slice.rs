//! InputSlice: one input of a model with several. The inputs travel to the
//! engine side by side, one flat row per sample; each input's slice copies its
//! part out, in its own shape. Never trained, so there is no gradient to send.

use super::{usize_field, Ctx, Layer};
use crate::error::{Error, Result};
use crate::parallel::for_each_row;
use serde_json::Value;

pub struct InputSlice {
    offset: usize,
    len: usize,
    width: usize,
    output_shape: Vec<usize>,
}

impl InputSlice {
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let offset = usize_field(config, name, "offset")?;
        let shape: Vec<usize> = config["shape"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().map(|d| d as usize).filter(|&d| d > 0))
                    .collect()
            })
            .ok_or_else(|| {
                Error(format!(
                    "{name}: 'shape' must be positive integers, got {}",
                    config["shape"]
                ))
            })?;
        let len: usize = shape.iter().product();
        let width: usize = input_shape.iter().product();
        if input_shape.len() != 1 || offset + len > width {
            crate::bail!(
                "{name}: values {offset}..{} do not lie within the packed inputs of \
                 per-sample shape {input_shape:?}",
                offset + len
            );
        }
        Ok(InputSlice {
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
        _dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        // Model inputs take no gradient; if one is asked for, the other inputs' parts are 0.
        if let Some(dx) = dx {
            dx.fill(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Key;
    use serde_json::json;

    #[test]
    fn copies_its_part_of_each_row() {
        let mut s =
            InputSlice::build("in_b", &json!({"offset": 2, "shape": [1, 3]}), &[6]).unwrap();
        assert_eq!(s.output_shape(), &[1, 3]);
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut y = vec![0.0; 6];
        let ctx = Ctx {
            training: false,
            key: Key::new(0),
            mask: None,
        };
        s.forward(&x, &mut y, 2, &ctx);
        assert_eq!(y, vec![2.0, 3.0, 4.0, 8.0, 9.0, 10.0]);
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
