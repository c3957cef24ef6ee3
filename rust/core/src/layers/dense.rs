//! Dense: y = activation(x·W + b), applied over the last axis.

use super::{field, usize_field, Ctx, Layer, Param};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::init::InitSpec;
use crate::matmul::Gemm;
use crate::parallel::for_each_row;
use crate::regularizer::Regularizer;
use crate::rng::Key;
use serde_json::Value;

pub struct Dense {
    units: usize,
    in_features: usize,
    output_shape: Vec<usize>,
    activation: Activation,
    use_bias: bool,
    /// [kernel (in, units), bias (units)?]
    params: Vec<Param>,
    /// Pre-activations, kept only when the activation's derivative needs them.
    pre_activation: Vec<f32>,
    fused_output: bool,
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
        let activation = Activation::from_spec(field(config, "activation"))?;
        let use_bias = field(config, "use_bias").as_bool().unwrap_or(true);
        let init = |k: &str, default: &str| -> Result<InitSpec> {
            match field(config, k) {
                Value::Null => InitSpec::from_spec(&Value::String(default.into())),
                v => InitSpec::from_spec(v),
            }
        };
        let mut params = vec![Param::new(
            "kernel",
            &[in_features, units],
            &init("kernel_initializer", "glorot_uniform")?,
            key.fold(0),
            Regularizer::from_spec(field(config, "kernel_regularizer"))?,
        )];
        if use_bias {
            params.push(Param::new(
                "bias",
                &[units],
                &init("bias_initializer", "zeros")?,
                key.fold(1),
                Regularizer::from_spec(field(config, "bias_regularizer"))?,
            ));
        }
        let mut output_shape = input_shape.to_vec();
        *output_shape.last_mut().expect("rank checked") = units;
        Ok(Dense {
            units,
            in_features,
            output_shape,
            activation,
            use_bias,
            params,
            pre_activation: Vec::new(),
            fused_output: false,
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
        Some(self.activation)
    }

    fn set_fused_output(&mut self, fused: bool) {
        self.fused_output = fused;
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, _ctx: &Ctx) {
        let m = self.matrix_rows(rows);
        let (units, act) = (self.units, self.activation);
        let gemm = Gemm::new(m, self.in_features, units);
        let bias = self.use_bias.then(|| self.params[1].value_slice());
        let add_bias = |row: &mut [f32]| {
            if let Some(b) = bias {
                for (v, &bv) in row.iter_mut().zip(b) {
                    *v += bv;
                }
            }
        };
        if act.backward_from_output() {
            // Bias and activation fused into one pass over the GEMM output.
            gemm.run(x, self.params[0].value_slice(), y, false);
            for_each_row(y, units, |_, row| {
                add_bias(row);
                act.forward_in_place(row, units);
            });
        } else {
            self.pre_activation.resize(m * units, 0.0);
            let z = &mut self.pre_activation;
            gemm.run(x, self.params[0].value_slice(), z, false);
            for_each_row(z, units, |_, row| add_bias(row));
            act.forward(z, y, units);
        }
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
        if !self.fused_output {
            self.activation.backward(&self.pre_activation, y, dy, units);
        }
        let dz: &[f32] = dy;
        // dW = xᵀ·dz
        Gemm::new(inf, m, units)
            .trans_a()
            .run(x, dz, self.params[0].grad_slice_mut(), false);
        if self.use_bias {
            // Column sums in a fixed row order: deterministic.
            let db = self.params[1].grad_slice_mut();
            db.fill(0.0);
            for row in dz.chunks_exact(units) {
                for (g, &d) in db.iter_mut().zip(row) {
                    *g += d;
                }
            }
        }
        if let Some(dx) = dx {
            // dx = dz·Wᵀ
            Gemm::new(m, units, inf)
                .trans_b()
                .run(dz, self.params[0].value_slice(), dx, false);
        }
    }
}
