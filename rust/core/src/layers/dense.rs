//! Dense: y = activation(x·W + b), applied over the last axis.

use super::affine::AffineOutput;
use super::{usize_field, Ctx, Layer, Param};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::matmul::Gemm;
use crate::rng::Key;
use serde_json::Value;

pub struct Dense {
    units: usize,
    in_features: usize,
    output_shape: Vec<usize>,
    /// [kernel (in, units), bias (units)?]
    params: Vec<Param>,
    out: AffineOutput,
}

impl Dense {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let units = usize_field(config, name, "units")?;
        if units == 0 {
            return Err(Error(format!(
                "{name}: 'units' must be a positive integer, got 0"
            )));
        }
        let Some(&in_features) = input_shape.last() else {
            return Err(Error(format!(
                "{name}: Dense needs an input of rank >= 2 (batch, features), got per-sample shape {input_shape:?}"
            )));
        };
        let activation = Activation::from_spec(super::field(config, "activation"))?;
        let use_bias = super::field(config, "use_bias").as_bool().unwrap_or(true);
        let params = super::kernel_and_bias(config, &[in_features, units], units, use_bias, key)?;
        let mut output_shape = input_shape.to_vec();
        *output_shape.last_mut().expect("rank checked") = units;
        Ok(Dense {
            units,
            in_features,
            output_shape,
            params,
            out: AffineOutput::new(activation, use_bias),
        })
    }

    /// Rows of the matrix product: samples times any middle axes.
    fn matrix_rows(&self, rows: usize) -> usize {
        rows * self.output_shape[..self.output_shape.len() - 1]
            .iter()
            .product::<usize>()
    }
}

impl Layer for Dense {
    fn mask_flow(&self) -> super::MaskFlow {
        super::MaskFlow::Keep
    }

    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn final_activation(&self) -> Option<Activation> {
        Some(self.out.activation)
    }

    fn set_fused_output(&mut self, fused: bool) {
        self.out.fused_output = fused;
    }

    fn watch_non_finite(&mut self, on: bool) -> bool {
        self.out.watch_non_finite = on;
        true
    }

    fn saw_non_finite(&self) -> bool {
        self.out.saw_non_finite()
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, _ctx: &Ctx) {
        let gemm = Gemm::new(self.matrix_rows(rows), self.in_features, self.units);
        let bias = self.out.use_bias.then(|| self.params[1].value_slice());
        self.out
            .forward(gemm, x, self.params[0].value_slice(), bias, y);
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        let m = self.matrix_rows(rows);
        let (units, inf) = (self.units, self.in_features);
        let bias_grad = self.params.get_mut(1).map(|b| b.grad_slice_mut());
        self.out.backward(y, dy, units, bias_grad);
        let dz: &[f32] = dy;
        // dW = xᵀ·dz
        Gemm::new(inf, m, units)
            .trans_a()
            .run(x, dz, self.params[0].grad_slice_mut(), false);
        if let Some(dx) = dx {
            // dx = dz·Wᵀ
            Gemm::new(m, units, inf)
                .trans_b()
                .run(dz, self.params[0].value_slice(), dx, false);
        }
    }
}
