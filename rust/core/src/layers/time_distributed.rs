//! TimeDistributed: applies one layer to every time step. Since layers take
//! a row count, the (rows, steps, ...) input is simply rows·steps samples of
//! the inner layer: no copies.

use super::{build, field, Ctx, Layer, MaskFlow, Param};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::rng::Key;
use serde_json::Value;

pub struct TimeDistributed {
    inner: Box<dyn Layer>,
    steps: usize,
    output_shape: Vec<usize>,
}

impl TimeDistributed {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let (&steps, step_shape) = input_shape.split_first().filter(|(_, r)| !r.is_empty()).ok_or_else(|| {
            Error(format!(
                "{name}: expected inputs of rank 3 or more (batch, timesteps, ...), got per-sample shape {input_shape:?}"
            ))
        })?;
        let inner = build(field(config, "layer"), step_shape, key)?;
        if inner.is_reshape() {
            return Err(Error(format!(
                "{name}: wrapping a Flatten or Reshape layer is not supported"
            )));
        }
        let mut output_shape = vec![steps];
        output_shape.extend_from_slice(inner.output_shape());
        Ok(TimeDistributed {
            inner,
            steps,
            output_shape,
        })
    }
}

impl Layer for TimeDistributed {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn params(&self) -> &[Param] {
        self.inner.params()
    }

    fn params_mut(&mut self) -> &mut [Param] {
        self.inner.params_mut()
    }

    fn mask_flow(&self) -> MaskFlow {
        MaskFlow::Keep
    }

    fn final_activation(&self) -> Option<Activation> {
        self.inner.final_activation()
    }

    fn set_fused_output(&mut self, fused: bool) {
        self.inner.set_fused_output(fused);
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, ctx: &Ctx<'_>) {
        let ctx = Ctx { mask: None, ..*ctx };
        self.inner.forward(x, y, rows * self.steps, &ctx);
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        self.inner.backward(x, y, dy, dx, rows * self.steps);
    }
}
