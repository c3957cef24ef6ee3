//! Rescaling: y = x · scale + offset (Keras's preprocessing layer, e.g. 1/255
//! for images given as bytes: the data can then stay uint8, and each batch is
//! converted and scaled as it is read).

use super::{f32_field, Ctx, Layer};
use crate::error::Result;
use crate::parallel::for_each_block;
use serde_json::Value;

pub struct Rescaling {
    scale: f32,
    offset: f32,
    output_shape: Vec<usize>,
}

impl Rescaling {
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        Ok(Rescaling {
            scale: f32_field(config, name, "scale", 1.0)?,
            offset: f32_field(config, name, "offset", 0.0)?,
            output_shape: input_shape.to_vec(),
        })
    }
}

impl Layer for Rescaling {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn mask_flow(&self) -> super::MaskFlow {
        super::MaskFlow::Keep
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx) {
        let (scale, offset) = (self.scale, self.offset);
        for_each_block(y, |at, block| {
            for (v, &xv) in block.iter_mut().zip(&x[at..]) {
                *v = xv * scale + offset;
            }
        });
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        if let Some(dx) = dx {
            let scale = self.scale;
            for_each_block(dx, |at, block| {
                for (d, &g) in block.iter_mut().zip(&dy[at..]) {
                    *d = g * scale;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_bad_numbers() {
        let r = Rescaling::build("r", &json!({"scale": 0.5}), &[3]).unwrap();
        assert_eq!((r.scale, r.offset), (0.5, 0.0));
        for bad in [json!({"scale": "x"}), json!({"scale": 1.0, "offset": [1]})] {
            let err = Rescaling::build("my_rescale", &bad, &[3])
                .err()
                .expect("an error");
            assert!(
                err.0.contains("my_rescale") && err.0.contains("finite number"),
                "{}",
                err.0
            );
        }
    }
}
