//! Activation: applies an activation function on its own.

use super::{field, Ctx, Layer};
use crate::activation::Activation;
use crate::error::Result;
use serde_json::Value;

pub struct ActivationLayer {
    activation: Activation,
    output_shape: Vec<usize>,
    fused_output: bool,
}

impl ActivationLayer {
    pub fn build(config: &Value, input_shape: &[usize]) -> Result<Self> {
        Ok(ActivationLayer {
            activation: Activation::from_spec(field(config, "activation"))?,
            output_shape: input_shape.to_vec(),
            fused_output: false,
        })
    }

    fn width(&self) -> usize {
        self.output_shape.last().copied().unwrap_or(1)
    }
}

impl Layer for ActivationLayer {
    fn mask_flow(&self) -> super::MaskFlow {
        super::MaskFlow::Keep
    }

    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn final_activation(&self) -> Option<Activation> {
        Some(self.activation)
    }

    fn set_fused_output(&mut self, fused: bool) {
        self.fused_output = fused;
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx) {
        self.activation.forward(x, y, self.width());
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        if let Some(dx) = dx {
            dx.copy_from_slice(dy);
            if !self.fused_output {
                self.activation.backward(x, y, dx, self.width());
            }
        }
    }
}
