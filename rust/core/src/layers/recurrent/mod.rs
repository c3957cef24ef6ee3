//! Recurrent layers: SimpleRNN, LSTM and GRU (one `Recurrent` layer over a
//! `cell`, driven through time by `rnn`), and the Bidirectional wrapper.

mod bidirectional;
mod cell;
mod rnn;

pub use bidirectional::Bidirectional;
pub use cell::CellKind;

use super::{field, usize_field, Ctx, Layer, MaskFlow, Param};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::init::InitSpec;
use crate::regularizer::Regularizer;
use crate::rng::Key;
use cell::Cell;
use rnn::{Rnn, RnnSpec};
use serde_json::Value;

fn flag(config: &Value, key: &str, default: bool) -> bool {
    field(config, key).as_bool().unwrap_or(default)
}

fn rate(config: &Value, name: &str, key: &str) -> Result<f32> {
    let v = match field(config, key) {
        Value::Null => 0.0,
        v => v.as_f64().unwrap_or(f64::NAN),
    };
    if !(0.0..1.0).contains(&v) {
        return Err(Error(format!(
            "{name}: '{key}' must be in [0, 1), got {}",
            field(config, key)
        )));
    }
    Ok(v as f32)
}

fn elementwise_activation(
    config: &Value,
    name: &str,
    key: &str,
    default: &str,
) -> Result<Activation> {
    let spec = match field(config, key) {
        Value::Null => Value::String(default.into()),
        v => v.clone(),
    };
    let act = Activation::from_spec(&spec)?;
    if !act.is_elementwise() {
        return Err(Error(format!(
            "{name}: '{key}' must be an elementwise activation, got {spec}"
        )));
    }
    Ok(act)
}

/// The cell, sequence options and shapes of a recurrent layer's config.
pub(crate) fn rnn_spec(
    name: &str,
    config: &Value,
    input_shape: &[usize],
    kind: CellKind,
) -> Result<RnnSpec> {
    let (steps, features) = match *input_shape {
        [t, f] if t > 0 && f > 0 => (t, f),
        [0, _] => {
            return Err(Error(format!(
                "{name}: sequences must have at least one time step, got per-sample shape {input_shape:?}"
            )))
        }
        _ => {
            return Err(Error(format!(
                "{name}: expected inputs of rank 3 (batch, timesteps, features), got per-sample shape {input_shape:?}"
            )))
        }
    };
    let units = usize_field(config, name, "units")?;
    if units == 0 {
        return Err(Error(format!(
            "{name}: 'units' must be a positive integer, got 0"
        )));
    }
    if kind == CellKind::Gru && !flag(config, "reset_after", true) {
        return Err(Error(format!(
            "{name}: reset_after=False is not supported; use reset_after=True (Keras's default)"
        )));
    }
    let recurrent_activation = if kind == CellKind::Simple {
        Activation::Linear
    } else {
        elementwise_activation(config, name, "recurrent_activation", "sigmoid")?
    };
    Ok(RnnSpec {
        cell: Cell {
            kind,
            units,
            activation: elementwise_activation(config, name, "activation", "tanh")?,
            recurrent_activation,
        },
        steps,
        features,
        use_bias: flag(config, "use_bias", true),
        return_sequences: flag(config, "return_sequences", false),
        return_state: flag(config, "return_state", false),
        go_backwards: flag(config, "go_backwards", false),
        stateful: flag(config, "stateful", false),
        zero_output_for_mask: flag(config, "zero_output_for_mask", false),
        dropout: rate(config, name, "dropout")?,
        recurrent_dropout: rate(config, name, "recurrent_dropout")?,
    })
}

/// kernel (features, gates·units), recurrent_kernel (units, gates·units) and
/// bias (gates·units; GRU: 2 × gates·units), Keras's layout and initializers.
pub(crate) fn rnn_params(config: &Value, spec: &RnnSpec, key: Key) -> Result<Vec<Param>> {
    let init = |k: &str, default: &str| -> Result<InitSpec> {
        match field(config, k) {
            Value::Null => InitSpec::from_spec(&Value::String(default.into())),
            v => InitSpec::from_spec(v),
        }
    };
    let reg = |k: &str| Regularizer::from_spec(field(config, k));
    let (u, width) = (spec.units(), spec.cell.kind.gates() * spec.units());
    let mut params = vec![
        Param::new(
            "kernel",
            &[spec.features, width],
            &init("kernel_initializer", "glorot_uniform")?,
            key.fold(0),
            reg("kernel_regularizer")?,
        )?,
        Param::new(
            "recurrent_kernel",
            &[u, width],
            &init("recurrent_initializer", "orthogonal")?,
            key.fold(1),
            reg("recurrent_regularizer")?,
        )?,
    ];
    if spec.use_bias {
        let shape: &[usize] = if spec.cell.kind == CellKind::Gru {
            &[2, width]
        } else {
            &[width]
        };
        let mut bias = Param::new(
            "bias",
            shape,
            &init("bias_initializer", "zeros")?,
            key.fold(2),
            reg("bias_regularizer")?,
        )?;
        if spec.cell.kind == CellKind::Lstm && flag(config, "unit_forget_bias", true) {
            // Keras starts the forget gate open: its bias block is ones.
            let b = bias.value.as_slice_mut().expect("contiguous");
            b[u..2 * u].fill(1.0);
        }
        params.push(bias);
    }
    Ok(params)
}

/// SimpleRNN, LSTM or GRU.
pub struct Recurrent {
    rnn: Rnn,
    params: Vec<Param>,
    output_shape: Vec<usize>,
}

impl Recurrent {
    /// The layer called with its starting state as further inputs (Keras's
    /// `initial_state`): one (units,) input for h, and one for c of an LSTM.
    pub fn build_with_initial_state(
        name: &str,
        config: &Value,
        input_shapes: &[&[usize]],
        key: Key,
        kind: CellKind,
    ) -> Result<Self> {
        let layer = Recurrent::build(name, config, input_shapes[0], key, kind)?;
        let spec = &layer.rnn.spec;
        let states = if kind.has_cell_state() { 2 } else { 1 };
        let units = [spec.units()];
        if input_shapes.len() != 1 + states || input_shapes[1..].iter().any(|s| *s != units) {
            crate::bail!(
                "{name}: initial_state must be {states} tensor(s) of shape (None, {}), got \
                 shapes {:?}",
                spec.units(),
                &input_shapes[1..]
            );
        }
        if spec.stateful {
            crate::bail!("{name}: a stateful layer cannot also take an initial_state");
        }
        Ok(layer)
    }
}

impl Recurrent {
    pub fn build(
        name: &str,
        config: &Value,
        input_shape: &[usize],
        key: Key,
        kind: CellKind,
    ) -> Result<Self> {
        let spec = rnn_spec(name, config, input_shape, kind)?;
        let params = rnn_params(config, &spec, key)?;
        // With return_state the states follow the output in one flat vector per
        // sample; the Python side splits them.
        let output_shape = if spec.return_state {
            vec![spec.output_size()]
        } else if spec.return_sequences {
            vec![spec.steps, spec.units()]
        } else {
            vec![spec.units()]
        };
        Ok(Recurrent {
            rnn: Rnn::new(spec),
            params,
            output_shape,
        })
    }
}

impl Layer for Recurrent {
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
        // A returned sequence keeps its steps' mask (with return_state, on the row
        // whose sequence part a slice takes out with it).
        if self.rnn.spec.return_sequences {
            MaskFlow::Keep
        } else {
            MaskFlow::Drop
        }
    }

    fn reset_states(&mut self) {
        self.rnn.reset_states();
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, ctx: &Ctx<'_>) {
        self.rnn.forward(&self.params, x, y, rows, ctx, &[]);
    }

    /// With `initial_state`: xs = [sequence, h0 (, c0)].
    fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize, ctx: &Ctx<'_>) {
        self.rnn
            .forward(&self.params, xs[0], y, rows, ctx, &xs[1..]);
    }

    fn backward_many(
        &mut self,
        xs: &[&[f32]],
        _y: &[f32],
        dy: &mut [f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let (first, states) = dxs.split_at_mut(1);
        self.rnn
            .backward(&mut self.params, xs[0], dy, first[0].take(), rows);
        // The starting state's gradient goes back to the tensors it came from.
        for (dx, grad) in states.iter_mut().zip(self.rnn.initial_state_grads()) {
            if let Some(dx) = dx {
                dx.copy_from_slice(&grad[..dx.len()]);
            }
        }
    }

    fn backward(
        &mut self,
        x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        self.rnn.backward(&mut self.params, x, dy, dx, rows);
    }
}
