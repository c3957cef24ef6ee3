//! Bidirectional: one recurrent layer reads the sequence forwards, another
//! backwards, and their outputs are merged (concat, sum, mul or ave). As in
//! Keras, the backward layer's output sequence is flipped back into real time
//! before merging.

use super::{rnn_params, rnn_spec, CellKind, Rnn};
use crate::error::{Error, Result};
use crate::layers::{field, Ctx, Layer, MaskFlow, Param};
use crate::rng::Key;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Merge {
    Concat,
    Sum,
    Mul,
    Ave,
}

pub struct Bidirectional {
    forward: Rnn,
    backward: Rnn,
    merge: Merge,
    /// The forward layer's params, then the backward layer's.
    params: Vec<Param>,
    forward_params: usize,
    output_shape: Vec<usize>,
    /// Each direction's output in real time order, (rows, steps?, units).
    out_forward: Vec<f32>,
    out_backward: Vec<f32>,
    grad: Vec<f32>,
    /// Each direction's output gradient, reused between batches.
    d_forward: Vec<f32>,
    d_backward: Vec<f32>,
}

fn cell_kind(name: &str, spec: &Value) -> Result<CellKind> {
    match spec.get("class_name").and_then(Value::as_str) {
        Some("SimpleRNN") => Ok(CellKind::Simple),
        Some("LSTM") => Ok(CellKind::Lstm),
        Some("GRU") => Ok(CellKind::Gru),
        other => Err(Error(format!(
            "{name}: Bidirectional wraps a SimpleRNN, LSTM or GRU layer, got {other:?}"
        ))),
    }
}

impl Bidirectional {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let merge = match field(config, "merge_mode").as_str() {
            Some("concat") => Merge::Concat,
            Some("sum") => Merge::Sum,
            Some("mul") => Merge::Mul,
            Some("ave") => Merge::Ave,
            _ => {
                return Err(Error(format!(
                "{name}: 'merge_mode' must be one of \"concat\", \"sum\", \"mul\", \"ave\", got {}",
                field(config, "merge_mode")
            )))
            }
        };
        let mut params = Vec::new();
        let mut rnns = Vec::new();
        for (i, which) in ["forward_layer", "backward_layer"].into_iter().enumerate() {
            let spec = field(config, which);
            let kind = cell_kind(name, spec)?;
            let layer_config = field(spec, "config");
            let rnn_spec = rnn_spec(name, layer_config, input_shape, kind)?;
            if rnn_spec.return_state {
                return Err(Error(format!(
                    "{name}: return_state is not supported inside Bidirectional"
                )));
            }
            params.extend(rnn_params(layer_config, &rnn_spec, key.fold(i as u64))?);
            rnns.push(Rnn::new(rnn_spec));
        }
        let backward = rnns.pop().expect("two layers");
        let forward = rnns.pop().expect("two layers");
        let (f, b) = (&forward.spec, &backward.spec);
        if f.return_sequences != b.return_sequences
            || f.units() != b.units() && merge != Merge::Concat
        {
            return Err(Error(format!(
                "{name}: the forward and backward layers must agree on return_sequences \
                 (and on units unless merge_mode is \"concat\")"
            )));
        }
        let width = match merge {
            Merge::Concat => f.units() + b.units(),
            _ => f.units(),
        };
        let output_shape = if f.return_sequences {
            vec![f.steps, width]
        } else {
            vec![width]
        };
        let forward_params = params.len() / 2;
        Ok(Bidirectional {
            forward,
            backward,
            merge,
            params,
            forward_params,
            output_shape,
            out_forward: Vec::new(),
            out_backward: Vec::new(),
            grad: Vec::new(),
            d_forward: Vec::new(),
            d_backward: Vec::new(),
        })
    }

    /// Time steps per sample in the output (1 when only the last step is returned).
    fn out_steps(&self) -> usize {
        if self.forward.spec.return_sequences {
            self.forward.spec.steps
        } else {
            1
        }
    }

    /// Position of backward-layer output step `s` (processing order) in real time.
    fn backward_step(&self, s: usize) -> usize {
        self.out_steps() - 1 - s
    }
}

impl Layer for Bidirectional {
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
        if self.forward.spec.return_sequences {
            MaskFlow::Keep
        } else {
            MaskFlow::Drop
        }
    }

    fn reset_states(&mut self) {
        self.forward.reset_states();
        self.backward.reset_states();
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, ctx: &Ctx<'_>) {
        let (fu, bu) = (self.forward.spec.units(), self.backward.spec.units());
        let steps = self.out_steps();
        self.out_forward.resize(rows * steps * fu, 0.0);
        self.out_backward.resize(rows * steps * bu, 0.0);
        let (fp, bp) = self.params.split_at(self.forward_params);
        let fctx = Ctx {
            key: ctx.key.fold(0),
            ..*ctx
        };
        let bctx = Ctx {
            key: ctx.key.fold(1),
            ..*ctx
        };
        self.forward
            .forward(fp, x, &mut self.out_forward, rows, &fctx, &[]);
        self.backward
            .forward(bp, x, &mut self.out_backward, rows, &bctx, &[]);
        let width = self.output_shape.last().copied().expect("non-empty");
        for r in 0..rows {
            for t in 0..steps {
                let fo = &self.out_forward[(r * steps + t) * fu..][..fu];
                let bo = &self.out_backward[(r * steps + self.backward_step(t)) * bu..][..bu];
                let out = &mut y[(r * steps + t) * width..][..width];
                match self.merge {
                    Merge::Concat => {
                        out[..fu].copy_from_slice(fo);
                        out[fu..].copy_from_slice(bo);
                    }
                    Merge::Sum => out
                        .iter_mut()
                        .zip(fo.iter().zip(bo))
                        .for_each(|(o, (a, b))| *o = a + b),
                    Merge::Mul => out
                        .iter_mut()
                        .zip(fo.iter().zip(bo))
                        .for_each(|(o, (a, b))| *o = a * b),
                    Merge::Ave => out
                        .iter_mut()
                        .zip(fo.iter().zip(bo))
                        .for_each(|(o, (a, b))| *o = 0.5 * (a + b)),
                }
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
        let (fu, bu) = (self.forward.spec.units(), self.backward.spec.units());
        let steps = self.out_steps();
        let width = self.output_shape.last().copied().expect("non-empty");
        // Split dy into each direction's output gradient (in its own step order).
        let mut d_forward = std::mem::take(&mut self.d_forward);
        let mut d_backward = std::mem::take(&mut self.d_backward);
        // Every element is written below (each merge mode sets both directions' rows).
        d_forward.resize(rows * steps * fu, 0.0);
        d_backward.resize(rows * steps * bu, 0.0);
        for r in 0..rows {
            for t in 0..steps {
                let d = &dy[(r * steps + t) * width..][..width];
                let bt = self.backward_step(t);
                let df = &mut d_forward[(r * steps + t) * fu..][..fu];
                let db = &mut d_backward[(r * steps + bt) * bu..][..bu];
                let fo = &self.out_forward[(r * steps + t) * fu..][..fu];
                let bo = &self.out_backward[(r * steps + bt) * bu..][..bu];
                match self.merge {
                    Merge::Concat => {
                        df.copy_from_slice(&d[..fu]);
                        db.copy_from_slice(&d[fu..]);
                    }
                    Merge::Sum => {
                        df.copy_from_slice(d);
                        db.copy_from_slice(d);
                    }
                    Merge::Ave => {
                        df.iter_mut().zip(d).for_each(|(o, &v)| *o = 0.5 * v);
                        db.iter_mut().zip(d).for_each(|(o, &v)| *o = 0.5 * v);
                    }
                    Merge::Mul => {
                        df.iter_mut()
                            .zip(d.iter().zip(bo))
                            .for_each(|(o, (v, b))| *o = v * b);
                        db.iter_mut()
                            .zip(d.iter().zip(fo))
                            .for_each(|(o, (v, f))| *o = v * f);
                    }
                }
            }
        }
        let (fp, bp) = self.params.split_at_mut(self.forward_params);
        match dx {
            Some(dx) => {
                self.forward.backward(fp, x, &d_forward, Some(dx), rows);
                self.grad.resize(dx.len(), 0.0);
                self.backward
                    .backward(bp, x, &d_backward, Some(&mut self.grad), rows);
                for (a, &b) in dx.iter_mut().zip(&self.grad) {
                    *a += b;
                }
            }
            None => {
                self.forward.backward(fp, x, &d_forward, None, rows);
                self.backward.backward(bp, x, &d_backward, None, rows);
            }
        }
        self.d_forward = d_forward;
        self.d_backward = d_backward;
    }
}
