//! Embedding: integer ids (carried as f32, exact below 2^24) to rows of a
//! (input_dim × output_dim) table. With mask_zero, id 0 marks padding: the
//! layer makes a mask that recurrent layers downstream use to skip those steps.

use super::{field, usize_field, Ctx, Layer, MaskFlow, Param};
use crate::error::{Error, Result};
use crate::init::InitSpec;
use crate::regularizer::Regularizer;
use crate::rng::Key;
use serde_json::Value;

pub struct Embedding {
    name: String,
    input_dim: usize,
    output_dim: usize,
    mask_zero: bool,
    output_shape: Vec<usize>,
    params: Vec<Param>,
}

impl Embedding {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let input_dim = usize_field(config, name, "input_dim")?;
        let output_dim = usize_field(config, name, "output_dim")?;
        if input_dim == 0 || output_dim == 0 {
            return Err(Error(format!(
                "{name}: 'input_dim' and 'output_dim' must be positive, got {input_dim} and {output_dim}"
            )));
        }
        let mask_zero = field(config, "mask_zero").as_bool().unwrap_or(false);
        if mask_zero && input_shape.len() != 1 {
            return Err(Error(format!(
                "{name}: mask_zero needs inputs of shape (batch, timesteps), got per-sample shape {input_shape:?}"
            )));
        }
        let init = match field(config, "embeddings_initializer") {
            Value::Null => InitSpec::from_spec(&Value::String("random_uniform".into()))?,
            v => InitSpec::from_spec(v)?,
        };
        let params = vec![Param::new(
            "embeddings",
            &[input_dim, output_dim],
            &init,
            key.fold(0),
            Regularizer::from_spec(field(config, "embeddings_regularizer"))?,
        )?];
        let mut output_shape = input_shape.to_vec();
        output_shape.push(output_dim);
        Ok(Embedding {
            name: name.to_string(),
            input_dim,
            output_dim,
            mask_zero,
            output_shape,
            params,
        })
    }

    /// The table row of id `v`, or None if `v` is not an id in range
    /// (the Python side reports those before the engine runs).
    fn row(&self, v: f32) -> Option<usize> {
        (v >= 0.0 && v < self.input_dim as f32 && v.fract() == 0.0).then_some(v as usize)
    }
}

impl Layer for Embedding {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn mask_flow(&self) -> MaskFlow {
        if self.mask_zero {
            MaskFlow::FromInput
        } else {
            MaskFlow::Drop
        }
    }

    fn check_input(&self, x: &[f32]) -> Result<()> {
        match x.iter().position(|&v| self.row(v).is_none()) {
            None => Ok(()),
            Some(i) => Err(Error(format!(
                "{}: ids must be whole numbers in [0, {}) (input_dim), got {} at flat position {i}",
                self.name, self.input_dim, x[i]
            ))),
        }
    }

    fn compute_mask(&self, x: &[f32], _rows: usize, mask: &mut [bool]) {
        for (m, &v) in mask.iter_mut().zip(x) {
            *m = v != 0.0;
        }
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx<'_>) {
        let d = self.output_dim;
        let table = self.params[0].value_slice();
        for (&v, out) in x.iter().zip(y.chunks_mut(d)) {
            match self.row(v) {
                Some(i) => out.copy_from_slice(&table[i * d..(i + 1) * d]),
                None => out.fill(0.0),
            }
        }
    }

    fn backward(
        &mut self,
        x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        let d = self.output_dim;
        let rows: Vec<Option<usize>> = x.iter().map(|&v| self.row(v)).collect();
        let grad = self.params[0].grad_slice_mut();
        grad.fill(0.0);
        // Serial scatter-add in input order: repeated ids accumulate deterministically.
        for (row, g) in rows.into_iter().zip(dy.chunks(d)) {
            if let Some(i) = row {
                for (a, &b) in grad[i * d..(i + 1) * d].iter_mut().zip(g) {
                    *a += b;
                }
            }
        }
        // Ids are not differentiable.
        if let Some(dx) = dx {
            dx.fill(0.0);
        }
    }
}
