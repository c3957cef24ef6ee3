//! GaussianNoise: in training, add zero-mean normal noise of `stddev` to every
//! value (a regularizer); identity at inference.

use super::{f32_field, Ctx, Layer};
use crate::error::{Error, Result};
use crate::parallel::for_each_block;
use serde_json::Value;

pub struct GaussianNoise {
    stddev: f32,
    output_shape: Vec<usize>,
}

impl GaussianNoise {
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let stddev = f32_field(config, name, "stddev", f32::NAN)?;
        if stddev.is_nan() || stddev < 0.0 {
            return Err(Error(format!(
                "{name}: 'stddev' must be a non-negative number, got {}",
                config.get("stddev").unwrap_or(&Value::Null)
            )));
        }
        Ok(GaussianNoise {
            stddev,
            output_shape: input_shape.to_vec(),
        })
    }
}

impl Layer for GaussianNoise {
    fn mask_flow(&self) -> super::MaskFlow {
        super::MaskFlow::Keep
    }

    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, ctx: &Ctx) {
        y.copy_from_slice(x);
        if !ctx.training || self.stddev == 0.0 {
            return;
        }
        let (stddev, key) = (self.stddev, ctx.key);
        // Element i's draw depends only on (key, i): the same noise for any thread count.
        for_each_block(y, |off, block| {
            for (j, v) in block.iter_mut().enumerate() {
                *v += stddev * key.normal_f64((off + j) as u64) as f32;
            }
        });
    }

    /// The noise does not depend on the input: the gradient passes unchanged.
    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        if let Some(dx) = dx {
            dx.copy_from_slice(dy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn noise_in_training_only_with_the_given_spread() {
        let mut layer = GaussianNoise::build("noise", &json!({"stddev": 0.5}), &[1000]).unwrap();
        let x = vec![1.0f32; 4000];
        let mut y = vec![0.0f32; 4000];
        layer.forward(&x, &mut y, 4, &Ctx::for_tests(false));
        assert_eq!(x, y);
        layer.forward(&x, &mut y, 4, &Ctx::for_tests(true));
        let n = y.len() as f64;
        let mean = y.iter().map(|&v| v as f64 - 1.0).sum::<f64>() / n;
        let var = y
            .iter()
            .map(|&v| (v as f64 - 1.0 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.03, "stddev {}", var.sqrt());
        let mut dx = vec![0.0f32; 4000];
        let mut dy: Vec<f32> = (0..4000).map(|i| i as f32).collect();
        layer.backward(&x, &y, &mut dy, Some(&mut dx), 4);
        assert_eq!(dx, dy);
        assert!(GaussianNoise::build("noise", &json!({"stddev": -1.0}), &[3]).is_err());
    }
}
