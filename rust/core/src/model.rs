//! A model: a graph of layers, its reused buffers, and the batch loop.
//!
//! Values are numbered: value 0 is the model's input and layer `i` declares
//! value `i + 1`; a layer reads the values its spec's `inbound` lists (the
//! previous value when absent, so a plain layer list is a chain), and the last
//! value is the model's output. Layers come in an order where every value is
//! made before it is read. Where a value feeds several layers, the gradients
//! they send back are summed.
//!
//! A layer called at several places (a shared layer) is one layer per call in
//! the spec, the later ones naming the first in `shares`: each call keeps its
//! own forward state, the first holds the weights, the others get a copy of
//! them before each batch and hand their weight gradients back to it after
//! the backward pass, so the weights are one set, updated once per step.

use crate::activation::Activation;
use crate::data::{Dataset, Features};
use crate::error::{Error, Result};
use crate::layers::{self, Ctx, Layer, MaskFlow, Param, Tensor};
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::ops::Operand;
use crate::optimizer::Optimizer;
use crate::phases;
use crate::rng::{permutation, Key};
use serde_json::Value;

/// Loss and metric totals over the batches run so far.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Σ over batches of (batch loss × batch size).
    pub loss_sum: f64,
    pub samples: f64,
    /// (Σ w·value, Σ w) per metric.
    pub metrics: Vec<(f64, f64)>,
    pub batches: usize,
}

pub struct Compiled {
    pub optimizer: Optimizer,
    /// One per model output, in order.
    pub heads: Vec<Head>,
}

/// What one output is trained and scored with.
pub struct Head {
    pub loss: Loss,
    /// Its share of the total loss (Keras's `loss_weights`).
    pub weight: f32,
    pub metrics: Vec<Metric>,
    /// The output's layer ends in softmax, nothing else reads it, and the loss is
    /// cross-entropy on its probabilities: the loss gives the gradient with
    /// respect to the logits.
    pub fused_softmax: bool,
}

/// One output's targets and weights for the current batch.
#[derive(Default)]
struct Targets {
    y: Vec<f32>,
    /// Per loss term (a sample's steps each get its weight).
    w: Vec<f32>,
    masked_loss_w: Vec<f32>,
    masked_metric_w: Vec<f32>,
}

/// Inputs a layer's slices are gathered for on the stack (more go to a Vec).
const INLINE_INPUTS: usize = 8;

pub struct Model {
    layers: Vec<Box<dyn Layer>>,
    /// Per layer: the values it reads, in its inputs' order.
    inputs: Vec<Vec<usize>>,
    /// Per layer: the value it writes (its own, `i + 1`, or the one of the max
    /// pool it took over).
    node_out: Vec<usize>,
    /// Per value: how many layers read it.
    consumers: Vec<usize>,
    /// Per value: whether a layer with weights lies on a path to it, so that
    /// its gradient is needed.
    upstream_weights: Vec<bool>,
    /// Per-sample shapes: [input, output of layer 0, output of layer 1, ...].
    shapes: Vec<Vec<usize>>,
    sizes: Vec<usize>,
    /// Per value: whether it has a batch axis (`rows` times its size); a traced
    /// layer's weights and constants, and reductions over the batch, do not.
    batched: Vec<bool>,
    /// Per layer: a node without inputs (a weight or a constant) whose value is
    /// read in place from the layer, never stored in `acts`.
    source: Vec<bool>,
    /// Value whose buffer holds value i: reshapes share their input's buffer
    /// instead of copying it.
    alias: Vec<usize>,
    /// Activations at each boundary, reused between batches.
    /// (Only canonical boundaries, `alias[i] == i`, have storage.)
    acts: Vec<Vec<f32>>,
    /// Gradients at each boundary (index 0 unused).
    grads: Vec<Vec<f32>>,
    /// Whether boundary i carries a time-step mask (fixed by the layer stack),
    /// and its values (rows × steps) for the current batch.
    has_mask: Vec<bool>,
    masks: Vec<Vec<bool>>,
    /// Per layer: taken over by the layer before it (a max pool fused into the
    /// convolution before it), so it is never run and its input buffer is unused.
    absorbed: Vec<bool>,
    /// Per value: never stored (the input of a max pool that was taken over).
    dead: Vec<bool>,
    /// Per buffer, during backward: whether its gradient has been written in
    /// this pass (later contributions add to it).
    grad_written: Vec<bool>,
    /// The input gradient of a one-input layer whose input has already
    /// received a gradient from another reader (added afterwards).
    fanout_dx: Vec<f32>,
    /// Per layer with several inputs: one input-gradient buffer per input.
    merge_dx: Vec<Vec<Vec<f32>>>,
    /// Per layer: the earlier layer whose weights it uses (a shared layer's later call).
    tied: Vec<Option<usize>>,
    /// Values nothing reads and that are not outputs: their gradient is zero.
    unread: Vec<usize>,
    /// The model's outputs (values), and their targets for the current batch.
    outputs: Vec<usize>,
    /// Scalar values added to the loss as they are (a traced layer's `add_loss`).
    added_losses: Vec<usize>,
    /// For the next tape backward: the gradients of the losses the calls added
    /// (`call_losses`, in order); empty otherwise.
    call_loss_seeds: Vec<f32>,
    /// Per output: the value holding each sample's loss when a loss function traced
    /// into the graph scores it (weighted and averaged like a built-in loss).
    head_values: Vec<Option<usize>>,
    /// Scalar values reported as metrics after the heads' (metric functions).
    metric_values: Vec<usize>,
    /// (value, output) of each `Targets` node: filled with that output's targets.
    target_values: Vec<(usize, usize)>,
    /// Per layer: only the loss needs it (it reads targets): predict skips it.
    loss_only: Vec<bool>,
    /// Per layer: the training mode its call fixes (`Dropout()(x, training=True)`,
    /// a base model called with `training=False`), whatever the model is doing.
    fixed_training: Vec<Option<bool>>,
    targets: Vec<Targets>,
    /// Each output's mean loss on the current batch.
    head_losses: Vec<f64>,
    y_batch: Vec<f32>,
    w_batch: Vec<f32>,
    idx_batch: Vec<u32>,
    key: Key,
    /// Training steps run; keys dropout masks.
    pub step: u64,
    /// Forward passes run: a custom loop's backward checks that its forward is
    /// still the last one (the activations are those of the last pass).
    pub forward_runs: u64,
    /// Batches run forward outside training: key the masks of calls fixed to
    /// training (Monte Carlo dropout), so that each prediction draws new ones.
    pub inference_batches: u64,
    pub compiled: Option<Compiled>,
}

impl Model {
    /// From `{"input_shape": [784], "layers": [...], "seed": 42}`.
    pub fn from_spec(spec: &Value) -> Result<Self> {
        let input_shape: Vec<usize> = spec
            .get("input_shape")
            .and_then(Value::as_array)
            .ok_or_else(|| Error("model spec needs 'input_shape'".into()))?
            .iter()
            .map(|d| d.as_u64().map(|v| v as usize).filter(|&v| v > 0))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                Error(format!(
                    "input_shape must be positive integers, got {}",
                    spec["input_shape"]
                ))
            })?;
        crate::sizing::shape("the model's input", &input_shape)?;
        let seed = spec.get("seed").and_then(Value::as_u64).unwrap_or(0);
        let key = Key::new(seed);
        let specs = spec
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| Error("model spec needs 'layers'".into()))?;
        let inputs = inbound_values(spec, specs)?;
        let tied = shared_layers(spec, specs)?;
        let fixed_training = fixed_training_modes(spec, specs)?;
        let mut shapes = vec![input_shape];
        let mut batched = vec![true];
        let mut has_mask = vec![false];
        let mut built: Vec<Box<dyn Layer>> = Vec::with_capacity(specs.len());
        // bytes the weights built so far hold (each checked before it is allocated)
        let mut weight_bytes = 0u64;
        // a model read from a file: its weights cannot take more than the file holds
        let budget = spec.get("weight_budget").and_then(Value::as_u64);
        for (i, s) in specs.iter().enumerate() {
            let operands: Vec<Operand> = inputs[i]
                .iter()
                .map(|&v| Operand {
                    shape: shapes[v].clone(),
                    batched: batched[v],
                })
                .collect();
            let (layer, held) =
                crate::sizing::building(layer_name(s), weight_bytes, budget, || {
                    layers::build_graph_node(s, &operands, key.fold(i as u64))
                });
            let mut layer = layer?;
            weight_bytes = held;
            crate::sizing::shape(
                &format!("{}: the output", layer_name(s)),
                layer.output_shape(),
            )?;
            if s["config"]["trainable"] == Value::Bool(false) {
                layer.params_mut().iter_mut().for_each(|p| p.frozen = true);
            }
            let masked = inputs[i].iter().any(|&v| has_mask[v]);
            let flow = layer.mask_flow();
            if masked && flow == MaskFlow::Combine {
                let steps = layer.output_shape().first().copied();
                if let Some(&v) = inputs[i]
                    .iter()
                    .find(|&&v| has_mask[v] && shapes[v].first().copied() != steps)
                {
                    crate::bail!(
                        "{}: a masked input of shape {:?} does not line up with the output's \
                         time steps {:?}, so their masks cannot be combined",
                        layer_name(s),
                        shapes[v],
                        layer.output_shape()
                    );
                }
            }
            has_mask.push(match flow {
                MaskFlow::Drop => false,
                MaskFlow::Keep => has_mask[inputs[i][0]],
                MaskFlow::FromInput => true,
                MaskFlow::Combine | MaskFlow::JoinSteps => masked,
            });
            if let Some(first) = tied[i] {
                let same = {
                    let a = &built[first];
                    a.params().len() == layer.params().len()
                        && a.params()
                            .iter()
                            .zip(layer.params())
                            .all(|(p, q)| p.value.shape() == q.value.shape())
                };
                if !same {
                    crate::bail!(
                        "{} is shared with an earlier call on inputs of shape {:?}, but here \
                         called on {:?}: its weights would need other shapes",
                        layer_name(s),
                        shapes[inputs[first][0]],
                        shapes[inputs[i][0]]
                    );
                }
            }
            shapes.push(layer.output_shape().to_vec());
            batched.push(layer.output_batched());
            built.push(layer);
        }
        let sizes: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        let n = shapes.len();
        let mut alias = vec![0; n];
        let mut consumers = vec![0; n];
        let mut upstream_weights = vec![false; n];
        for (i, layer) in built.iter().enumerate() {
            alias[i + 1] = if layer.is_reshape() {
                alias[inputs[i][0]]
            } else {
                i + 1
            };
            for &v in &inputs[i] {
                consumers[v] += 1;
            }
            upstream_weights[i + 1] =
                !layer.params().is_empty() || inputs[i].iter().any(|&v| upstream_weights[v]);
        }
        let outputs = spec_outputs(spec, n)?;
        if let Some(&v) = outputs.iter().find(|&&v| !batched[v]) {
            crate::bail!(
                "the model's output {} has no batch axis (a weight, a constant, or a \
                 reduction over the batch axis, of shape {:?}); outputs need one value per sample",
                layer_name(&specs[v - 1]),
                shapes[v]
            );
        }
        let source: Vec<bool> = built.iter().map(|l| l.source().is_some()).collect();
        let target_values: Vec<(usize, usize)> = built
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.target_head().map(|k| (i + 1, k)))
            .collect();
        let mut loss_only = vec![false; built.len()];
        for i in 0..built.len() {
            loss_only[i] = built[i].target_head().is_some()
                || inputs[i].iter().any(|&v| v > 0 && loss_only[v - 1]);
        }
        let added_losses = spec_scalar_values(spec, "added_losses", n)?;
        let head_values = spec_head_values(spec, n, outputs.len())?;
        if let Some(v) = head_values
            .iter()
            .flatten()
            .copied()
            .find(|&v| !batched[v] || sizes[v] != 1)
        {
            crate::bail!(
                "a loss function's value must be one number per sample, but {} is {}{:?}",
                layer_name(&specs[v - 1]),
                if batched[v] {
                    ""
                } else {
                    "without a batch axis, "
                },
                shapes[v]
            );
        }
        let metric_values = spec_scalar_values(spec, "metric_values", n)?;
        if let Some(&v) = metric_values
            .iter()
            .find(|&&v| batched[v] || sizes_of(&shapes[v]) != 1)
        {
            crate::bail!(
                "a metric value must be one number (no batch axis), but {} is {:?}",
                layer_name(&specs[v - 1]),
                shapes[v]
            );
        }
        if let Some(&v) = outputs.iter().find(|&&v| v > 0 && loss_only[v - 1]) {
            crate::bail!(
                "the model's output {} depends on the targets, which only a loss may read",
                layer_name(&specs[v - 1])
            );
        }
        for &(v, k) in &target_values {
            // (a loss function may read targets shaped otherwise: class ids)
            let free = head_values.get(k).is_some_and(Option::is_some);
            if k >= outputs.len() || (!free && shapes[v] != shapes[outputs[k]]) {
                crate::bail!(
                    "{}: targets of output {k} shaped {:?}, but the model has {} output(s){}",
                    layer_name(&specs[v - 1]),
                    shapes[v],
                    outputs.len(),
                    outputs
                        .get(k)
                        .map(|&o| format!(" and that one is shaped {:?}", shapes[o]))
                        .unwrap_or_default()
                );
            }
        }
        if let Some(&v) = added_losses
            .iter()
            .find(|&&v| batched[v] || sizes_of(&shapes[v]) != 1)
        {
            crate::bail!(
                "an added loss must be one number (no batch axis), but {} is {}{:?}",
                layer_name(&specs[v - 1]),
                if batched[v] { "batched, " } else { "" },
                shapes[v]
            );
        }
        // Values nothing reads (an unused output of a nested model): computed, and
        // their gradient is zero.
        let unread: Vec<usize> = (1..n)
            .filter(|&v| {
                consumers[v] == 0
                    && !outputs.contains(&v)
                    && !added_losses.contains(&v)
                    && !head_values.contains(&Some(v))
            })
            .collect();
        let absorbed = fuse_max_pools(&mut built, &inputs, &consumers, &has_mask, &outputs);
        let mut node_out: Vec<usize> = (1..n).collect();
        let mut dead = vec![false; n];
        for j in (0..built.len()).filter(|&j| absorbed[j]) {
            let v = inputs[j][0];
            node_out[v - 1] = j + 1;
            dead[v] = true;
        }
        let merge_dx = inputs
            .iter()
            .map(|ins| {
                if ins.len() > 1 {
                    vec![Vec::new(); ins.len()]
                } else {
                    Vec::new()
                }
            })
            .collect();
        Ok(Model {
            unread,
            tied,
            absorbed,
            dead,
            grad_written: vec![false; n],
            fanout_dx: Vec::new(),
            merge_dx,
            inputs,
            node_out,
            consumers,
            upstream_weights,
            has_mask,
            masks: vec![Vec::new(); n],
            layers: built,
            shapes,
            sizes,
            batched,
            source,
            alias,
            acts: vec![Vec::new(); n],
            grads: vec![Vec::new(); n],
            targets: outputs.iter().map(|_| Targets::default()).collect(),
            head_losses: vec![0.0; outputs.len()],
            outputs,
            added_losses,
            call_loss_seeds: Vec::new(),
            head_values,
            metric_values,
            target_values,
            loss_only,
            fixed_training,
            y_batch: Vec::new(),
            w_batch: Vec::new(),
            idx_batch: Vec::new(),
            key,
            step: 0,
            inference_batches: 0,
            forward_runs: 0,
            compiled: None,
        })
    }

    /// From `{"loss": ..., "optimizer": ..., "metrics": [...]}` (one output), or
    /// `{"optimizer": ..., "outputs": [{"loss": ..., "weight": w, "metrics": [...]}, ...]}`
    /// with one entry per output.
    pub fn compile(&mut self, spec: &Value) -> Result<()> {
        let optimizer = Optimizer::from_spec(&spec["optimizer"])?;
        let head_specs: Vec<&Value> = match spec.get("outputs") {
            Some(Value::Array(list)) => list.iter().collect(),
            _ => vec![spec],
        };
        if head_specs.len() != self.outputs.len() {
            crate::bail!(
                "compile: the model has {} outputs, got losses for {}",
                self.outputs.len(),
                head_specs.len()
            );
        }
        let mut heads = Vec::with_capacity(head_specs.len());
        for (k, h) in head_specs.iter().enumerate() {
            let loss = Loss::from_spec(&h["loss"])?;
            let metrics = match h.get("metrics") {
                Some(Value::Array(ms)) => {
                    ms.iter().map(Metric::from_spec).collect::<Result<_>>()?
                }
                _ => Vec::new(),
            };
            let weight = layers::f32_field(h, "compile", "weight", 1.0)?;
            let out = self.outputs[k];
            // (an output that is the model's input has no layer to fuse with)
            let fused_softmax = loss.fuses_with_softmax()
                && out > 0
                && self.consumers[out] == 0
                && self.layers[out - 1].final_activation() == Some(Activation::Softmax);
            heads.push(Head {
                loss,
                weight,
                metrics,
                fused_softmax,
            });
        }
        self.compiled = Some(Compiled { optimizer, heads });
        self.set_fused_outputs(true);
        Ok(())
    }

    /// Hands each output layer whose loss fuses with its softmax the loss's
    /// gradient with respect to the logits (`fused`), or none (plain gradients).
    fn set_fused_outputs(&mut self, fused: bool) {
        let heads = self.compiled.as_ref().map_or(&[][..], |c| &c.heads[..]);
        for (i, l) in self.layers.iter_mut().enumerate() {
            let fuses = self
                .outputs
                .iter()
                .zip(heads)
                .any(|(&out, h)| h.fused_softmax && out == i + 1);
            l.set_fused_output(fused && fuses);
        }
    }

    pub fn shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    /// Values per sample of the input (several inputs side by side).
    pub fn input_size(&self) -> usize {
        self.sizes[0]
    }

    /// Values per sample of all outputs together (predict writes them side by side).
    pub fn output_size(&self) -> usize {
        self.outputs.iter().map(|&v| self.sizes[v]).sum()
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The layers that hold weights of their own, with their index: every layer
    /// but the later calls of a shared one.
    pub fn weight_layers(&self) -> impl Iterator<Item = (usize, &dyn Layer)> {
        self.layers
            .iter()
            .enumerate()
            .filter(|(i, _)| self.tied[*i].is_none())
            .map(|(i, l)| (i, &**l))
    }

    /// The mask of merge layer `i`'s output: its inputs' masks combined step by step
    /// (a step is kept where every masked input keeps it), or joined along the
    /// time axis; an input without a mask keeps all its steps.
    fn merge_masks(&self, i: usize, rows: usize, flow: MaskFlow, out: &mut Vec<bool>) {
        let steps = self.shapes[self.node_out[i]][0];
        out.clear();
        out.resize(rows * steps, true);
        let ins = &self.inputs[i];
        if flow == MaskFlow::Combine {
            for &v in ins.iter().filter(|&&v| self.has_mask[v]) {
                for (o, &m) in out.iter_mut().zip(&self.masks[v][..rows * steps]) {
                    *o &= m;
                }
            }
            return;
        }
        for (r, row) in out.chunks_mut(steps).enumerate() {
            let mut at = 0;
            for &v in ins {
                let n = self.shapes[v][0];
                if self.has_mask[v] {
                    row[at..at + n].copy_from_slice(&self.masks[v][r * n..(r + 1) * n]);
                }
                at += n;
            }
        }
    }

    /// Gives the later calls of each shared layer its current weights.
    fn sync_tied_weights(&mut self) {
        for j in 0..self.layers.len() {
            let Some(i) = self.tied[j] else { continue };
            let (before, after) = self.layers.split_at_mut(j);
            for (src, dst) in before[i].params().iter().zip(after[0].params_mut()) {
                dst.value_slice_mut().copy_from_slice(src.value_slice());
            }
        }
    }

    /// Adds the weight gradients of a shared layer's later calls to its first's.
    fn gather_tied_grads(&mut self) {
        for j in (0..self.layers.len()).rev() {
            let Some(i) = self.tied[j] else { continue };
            let (before, after) = self.layers.split_at_mut(j);
            for (dst, src) in before[i].params_mut().iter_mut().zip(after[0].params()) {
                add_into(
                    dst.grad_slice_mut(),
                    src.grad.as_slice().expect("contiguous"),
                );
            }
        }
    }

    /// Whether a forward pass over `rows` samples is too small for any of its
    /// operations to go parallel (so it may run outside the thread pool).
    pub fn is_serial_work(&self, rows: usize) -> bool {
        let widest = self.sizes.iter().copied().max().unwrap_or(0);
        let weights: usize = self.params().map(|p| p.value.len()).sum();
        rows * widest < crate::parallel::PARALLEL_THRESHOLD
            && rows * self.sizes[0] < crate::data::GATHER_PARALLEL
            && rows * weights < crate::matmul::PARALLEL_FLOPS
    }

    /// Forget the state that stateful recurrent layers carry between batches.
    pub fn reset_states(&mut self) {
        for layer in &mut self.layers {
            layer.reset_states();
        }
    }

    /// Freeze (or unfreeze) layer `index`: its weights keep their values in training.
    pub fn set_layer_frozen(&mut self, index: usize, frozen: bool) -> Result<()> {
        if index >= self.layers.len() {
            crate::bail!("no layer {index}");
        }
        for j in 0..self.layers.len() {
            if j == index || self.tied[j] == Some(index) {
                self.layers[j]
                    .params_mut()
                    .iter_mut()
                    .for_each(|p| p.frozen = frozen);
            }
        }
        Ok(())
    }

    pub fn reset_layer_states(&mut self, index: usize) -> Result<()> {
        match self.layers.get_mut(index) {
            Some(layer) => {
                layer.reset_states();
                Ok(())
            }
            None => Err(Error(format!("no layer {index}"))),
        }
    }

    /// Every weight once (a shared layer's weights with its first call).
    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.weight_layers().flat_map(|(_, l)| l.params().iter())
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers
            .iter_mut()
            .zip(&self.tied)
            .filter(|(_, t)| t.is_none())
            .flat_map(|(l, _)| l.params_mut().iter_mut())
            .collect()
    }

    /// The epoch's shuffled sample order.
    pub fn shuffled_order(&self, n: usize, epoch: u64) -> Vec<u32> {
        permutation(self.key.fold(0x0054_ff1e).fold(epoch), n)
    }

    /// An error unless the buffers of a batch of `rows` samples (activations,
    /// their gradients when `training`) fit in memory: checked before the first
    /// batch, so that a batch size too large is a message, not an abort.
    fn check_batch_memory(&self, rows: usize, training: bool) -> Result<()> {
        let copies = if training { 2u64 } else { 1 };
        let mut bytes = 0u64;
        let mut widest = (0, 0);
        for i in 0..self.sizes.len() {
            if self.alias[i] != i || self.dead[i] {
                continue;
            }
            let len = (self.value_len(i, 1) as u64).saturating_mul(rows as u64);
            bytes = bytes.saturating_add(len.saturating_mul(4 * copies));
            if len > widest.1 {
                widest = (i, len);
            }
        }
        if bytes > crate::sizing::limit() {
            crate::bail!(
                "a batch of {rows} samples needs {} of activations{}, more than the {} this \
                 machine can give (its memory; the widest value has shape {:?} per sample); \
                 use a smaller batch_size",
                crate::sizing::human(bytes as u128),
                if training { " and gradients" } else { "" },
                crate::sizing::human(crate::sizing::limit() as u128),
                self.shapes[widest.0]
            );
        }
        Ok(())
    }

    /// Grows the batch buffers to `rows` samples. Fresh memory is zero-filled in
    /// chunks with an interrupt check between them: the first fill of a huge batch
    /// faults in gigabytes of pages, seconds on some machines.
    fn reserve(&mut self, rows: usize) -> Result<()> {
        let output_is_input = self.outputs.iter().any(|&v| self.alias[v] == 0);
        for i in 0..self.sizes.len() {
            if self.alias[i] != i || self.dead[i] {
                continue;
            }
            let len = self.value_len(i, rows);
            // (a source's value stays in its layer)
            if !(i > 0 && self.source[i - 1]) && self.acts[i].len() < len {
                grow(&mut self.acts[i], len)?;
            }
            if (i > 0 || output_is_input) && self.grads[i].len() < len {
                grow(&mut self.grads[i], len)?;
            }
        }
        let widest_fanout = (0..self.sizes.len())
            // read by several layers, by one and the loss, or an output of several
            .filter(|&v| {
                self.consumers[v] + usize::from(self.outputs.contains(&v)) > 1
                    || (self.outputs.len() > 1 && self.outputs.contains(&v))
            })
            .map(|v| self.value_len(v, rows))
            .max()
            .unwrap_or(0);
        if self.fanout_dx.len() < widest_fanout {
            grow(&mut self.fanout_dx, widest_fanout)?;
        }
        for i in 0..self.inputs.len() {
            for k in 0..self.merge_dx[i].len() {
                let len = self.value_len(self.inputs[i][k], rows);
                if self.merge_dx[i][k].len() < len {
                    grow(&mut self.merge_dx[i][k], len)?;
                }
            }
        }
        Ok(())
    }

    /// Elements of value `v` for a batch of `rows` samples.
    fn value_len(&self, v: usize, rows: usize) -> usize {
        if self.batched[v] {
            rows * self.sizes[v]
        } else {
            self.sizes[v]
        }
    }

    /// Runs the value checks of the layers that read the model's input
    /// (Embedding's ids) on the batch about to go forward.
    fn check_batch(&self, rows: usize, input: Option<&[f32]>) -> Result<()> {
        let x = &input.unwrap_or(&self.acts[0])[..rows * self.sizes[0]];
        for (layer, ins) in self.layers.iter().zip(&self.inputs) {
            if !layer.is_reshape() && ins.iter().any(|&v| self.alias[v] == 0) {
                layer.check_input(x)?;
            }
        }
        Ok(())
    }

    /// Runs every layer on `rows` samples: those in `input` if given (read in
    /// place, no copy), else those already in `acts[0]`.
    /// `with_loss`: also the layers only a loss needs (they read the targets).
    fn forward(&mut self, rows: usize, training: bool, input: Option<&[f32]>, with_loss: bool) {
        self.forward_runs += 1;
        let stream = if training {
            self.step
        } else {
            self.inference_batches += 1;
            // (apart from the training steps' keys)
            self.inference_batches | 1 << 63
        };
        for i in 0..self.layers.len() {
            if crate::interrupt::poll() {
                return; // (the caller's next check stops the call)
            }
            if self.layers[i].is_reshape() || self.absorbed[i] || self.source[i] {
                continue;
            }
            if self.loss_only[i] && (!with_loss || self.layers[i].target_head().is_some()) {
                continue; // (a Targets node's value is filled by load_batch)
            }
            let out = self.node_out[i];
            // Taken out for the call, so that the inputs can be borrowed beside it.
            let mut y = std::mem::take(&mut self.acts[out]);
            let mut out_mask = std::mem::take(&mut self.masks[out]);
            // The layers before this one, whose sources (weights) it may read.
            let (done, rest) = self.layers.split_at_mut(i);
            let layer = &mut rest[0];
            let (acts, alias, sizes, batched, source) = (
                &self.acts,
                &self.alias,
                &self.sizes,
                &self.batched,
                &self.source,
            );
            let value = |v: usize| -> &[f32] {
                if v > 0 && source[v - 1] {
                    return done[v - 1].source().expect("a source layer");
                }
                let len = if batched[v] {
                    rows * sizes[v]
                } else {
                    sizes[v]
                };
                match input {
                    Some(input) if alias[v] == 0 => &input[..len],
                    _ => &acts[alias[v]][..len],
                }
            };
            // (a node that draws random values reads nothing)
            let first = self.inputs[i].first().copied();
            let flow = layer.mask_flow();
            if let (MaskFlow::FromInput, Some(first)) = (flow, first) {
                let steps = self.shapes[first][0];
                out_mask.resize(rows * steps, true);
                layer.compute_mask(value(first), rows, &mut out_mask[..rows * steps]);
            }
            let frozen = layer.params().first().is_some_and(|p| p.frozen);
            let in_mask = first
                .filter(|&f| self.has_mask[f])
                .map(|f| &self.masks[f][..]);
            let mode = self.fixed_training[i].unwrap_or(training);
            let ctx = Ctx {
                training: mode && !(frozen && layer.inference_when_frozen()),
                key: self.key.fold(i as u64).fold(0xd0).fold(stream),
                // (a value's mask holds exactly this batch's rows × its steps)
                mask: in_mask,
            };
            let out_len = if batched[out] {
                rows * sizes[out]
            } else {
                sizes[out]
            };
            let y_out = &mut y[..out_len];
            match &self.inputs[i][..] {
                [] => layer.forward(&[], y_out, rows, &ctx),
                [only] => layer.forward(value(*only), y_out, rows, &ctx),
                many if many.len() <= INLINE_INPUTS => {
                    let mut xs: [&[f32]; INLINE_INPUTS] = [&[]; INLINE_INPUTS];
                    for (x, &v) in xs.iter_mut().zip(many) {
                        *x = value(v);
                    }
                    layer.forward_many(&xs[..many.len()], y_out, rows, &ctx);
                }
                many => {
                    let xs: Vec<&[f32]> = many.iter().map(|&v| value(v)).collect();
                    layer.forward_many(&xs, y_out, rows, &ctx);
                }
            }
            if flow == MaskFlow::Keep {
                if let Some(m) = in_mask {
                    out_mask.clear();
                    out_mask.extend_from_slice(m);
                }
            } else if self.has_mask[out] && matches!(flow, MaskFlow::Combine | MaskFlow::JoinSteps)
            {
                self.merge_masks(i, rows, flow, &mut out_mask);
            }
            self.acts[out] = y;
            self.masks[out] = out_mask;
        }
    }

    /// Backpropagates `grads[last]` through every layer, setting param grads.
    /// Layers run in reverse order, so every reader of a value has sent its
    /// gradient back before the value's own layer reads it.
    fn backward(&mut self, rows: usize) {
        self.backward_pass(rows, true);
    }

    /// `backward`; without `with_loss`, from the outputs' gradients alone (the
    /// nodes only a loss needs are skipped, as their forward was).
    fn backward_pass(&mut self, rows: usize, with_loss: bool) {
        self.grad_written.fill(false);
        let loss_values = self
            .added_losses
            .iter()
            .chain(self.head_values.iter().flatten())
            .filter(|_| with_loss);
        for &v in self.outputs.iter().chain(loss_values) {
            self.grad_written[self.alias[v]] = true;
        }
        if !with_loss && !self.call_loss_seeds.is_empty() {
            let seeded: Vec<(usize, f32)> = self
                .call_losses()
                .zip(self.call_loss_seeds.clone())
                .collect();
            for (v, g) in seeded {
                let b = self.alias[v];
                self.grads[b][0] = g;
                self.grad_written[b] = true;
            }
        }
        for &v in &self.unread {
            let b = self.alias[v];
            if !self.grad_written[b] && !self.dead[v] {
                let len = self.value_len(v, rows);
                self.grads[b][..len].fill(0.0);
                self.grad_written[b] = true;
            }
        }
        for i in (0..self.layers.len()).rev() {
            if crate::interrupt::poll() {
                return; // (the caller's next check stops the call)
            }
            // Nothing to do where no layer with weights lies at or before this one.
            if !self.upstream_weights[i + 1] {
                continue;
            }
            if self.layers[i].is_reshape() || self.absorbed[i] {
                continue; // a reshape's input and output gradients share one buffer
            }
            if !with_loss && self.loss_only[i] {
                continue;
            }
            if self.source[i] {
                // A weight of a traced layer: its readers have summed its gradient,
                // which becomes the weight's (buffers swapped, not copied).
                let out = self.node_out[i];
                let len = self.value_len(out, rows);
                if let Some(p) = self.layers[i].params_mut().first_mut() {
                    if self.grads[out].len() == len && p.grad.len() == len {
                        let shape = p.grad.raw_dim();
                        let summed = std::mem::take(&mut self.grads[out]);
                        let grad = Tensor::from_shape_vec(shape, summed).expect("same size");
                        let old = std::mem::replace(&mut p.grad, grad);
                        self.grads[out] = old.into_raw_vec_and_offset().0;
                        continue;
                    }
                }
                let dy = &mut self.grads[out][..len];
                self.layers[i].backward(&[], &[], dy, None, rows);
                continue;
            }
            if self.inputs[i].len() == 1 {
                self.backward_one(i, rows);
            } else {
                self.backward_many(i, rows);
            }
        }
    }

    /// Backward of a one-input layer: its input gradient is written in place
    /// when it is the first to arrive, else computed aside and added.
    fn backward_one(&mut self, i: usize, rows: usize) {
        let out = self.node_out[i];
        let v = self.inputs[i][0];
        let buffer = self.alias[v];
        let len = self.value_len(v, rows);
        let out_len = self.value_len(out, rows);
        let mut dy = std::mem::take(&mut self.grads[out]);
        let (done, rest) = self.layers.split_at_mut(i);
        let layer = &mut rest[0];
        let x = if v > 0 && self.source[v - 1] {
            done[v - 1].source().expect("a source layer")
        } else {
            &self.acts[buffer][..len]
        };
        let y = &self.acts[out][..out_len];
        let dy_in = &mut dy[..out_len];
        // No input gradient where nothing upstream has weights (e.g. after Flatten).
        if !self.upstream_weights[v] {
            layer.backward(x, y, dy_in, None, rows);
        } else if !self.grad_written[buffer] {
            let dx = &mut self.grads[buffer][..len];
            layer.backward(x, y, dy_in, Some(dx), rows);
            self.grad_written[buffer] = true;
        } else {
            let aside = &mut self.fanout_dx[..len];
            layer.backward(x, y, dy_in, Some(aside), rows);
            add_into(&mut self.grads[buffer][..len], aside);
        }
        self.grads[out] = dy;
    }

    /// Backward of a layer with several inputs. Each input's gradient goes to
    /// its own slot; a slot whose value has no gradient yet (and that no other
    /// slot of this layer shares) is swapped with the value's gradient buffer,
    /// so it is written in place; the others are added afterwards.
    fn backward_many(&mut self, i: usize, rows: usize) {
        let out = self.node_out[i];
        let n = self.inputs[i].len();
        let mut slots = std::mem::take(&mut self.merge_dx[i]);
        let mut direct = [false; INLINE_INPUTS];
        for (k, &v) in self.inputs[i].iter().enumerate().take(INLINE_INPUTS) {
            let buffer = self.alias[v];
            let shared = self.inputs[i][..k]
                .iter()
                .chain(&self.inputs[i][k + 1..])
                .any(|&u| self.alias[u] == buffer);
            if self.upstream_weights[v] && !self.grad_written[buffer] && !shared {
                std::mem::swap(&mut slots[k], &mut self.grads[buffer]);
                direct[k] = true;
            }
        }
        let mut dy = std::mem::take(&mut self.grads[out]);
        {
            let (done, rest) = self.layers.split_at_mut(i);
            let layer = &mut rest[0];
            let (acts, alias, sizes, batched, source) = (
                &self.acts,
                &self.alias,
                &self.sizes,
                &self.batched,
                &self.source,
            );
            let len = |v: usize| {
                if batched[v] {
                    rows * sizes[v]
                } else {
                    sizes[v]
                }
            };
            let value = |v: usize| -> &[f32] {
                if v > 0 && source[v - 1] {
                    done[v - 1].source().expect("a source layer")
                } else {
                    &acts[alias[v]][..len(v)]
                }
            };
            let y = &acts[out][..len(out)];
            let dy_in = &mut dy[..len(out)];
            let ins = &self.inputs[i];
            let wants = |k: usize| self.upstream_weights[ins[k]];
            if n <= INLINE_INPUTS {
                let mut xs: [&[f32]; INLINE_INPUTS] = [&[]; INLINE_INPUTS];
                let mut dxs: [Option<&mut [f32]>; INLINE_INPUTS] = Default::default();
                for (k, slot) in slots.iter_mut().enumerate() {
                    xs[k] = value(ins[k]);
                    dxs[k] = wants(k).then(|| &mut slot[..len(ins[k])]);
                }
                layer.backward_many(&xs[..n], y, dy_in, &mut dxs[..n], rows);
            } else {
                let xs: Vec<&[f32]> = ins.iter().map(|&v| value(v)).collect();
                let mut dxs: Vec<Option<&mut [f32]>> = slots
                    .iter_mut()
                    .enumerate()
                    .map(|(k, s)| wants(k).then(|| &mut s[..len(ins[k])]))
                    .collect();
                layer.backward_many(&xs, y, dy_in, &mut dxs, rows);
            }
        }
        self.grads[out] = dy;
        for k in 0..n {
            let v = self.inputs[i][k];
            let buffer = self.alias[v];
            if k < INLINE_INPUTS && direct[k] {
                std::mem::swap(&mut slots[k], &mut self.grads[buffer]);
                self.grad_written[buffer] = true;
            } else if self.upstream_weights[v] {
                let len = self.value_len(v, rows);
                if self.grad_written[buffer] {
                    add_into(&mut self.grads[buffer][..len], &slots[k][..len]);
                } else {
                    self.grads[buffer][..len].copy_from_slice(&slots[k][..len]);
                    self.grad_written[buffer] = true;
                }
            }
        }
        self.merge_dx[i] = slots;
    }

    fn regularization(&self) -> f64 {
        self.params()
            .filter(|p| p.is_trained())
            .filter_map(|p| p.regularizer.map(|r| r.penalty(p.value_slice())))
            .sum()
    }

    /// Loads the samples `idx` into the input, target and weight buffers.
    fn load_batch(&mut self, data: &Dataset, idx: &[u32]) -> Result<bool> {
        let rows = idx.len();
        self.reserve(rows)?;
        data.x.gather(data.x_width, idx, &mut self.acts[0]);
        self.y_batch.resize(rows * data.y_width, 0.0);
        data.gather_y(idx, &mut self.y_batch);
        self.w_batch.resize(rows * data.w_width, 0.0);
        let weighted = data.gather_weights(idx, &mut self.w_batch);
        let single = self.outputs.len() == 1;
        let mut offset = 0;
        for k in 0..self.outputs.len() {
            let (steps, y_width) = (self.output_steps(k), self.target_width(k));
            let t = &mut self.targets[k];
            // One output's targets are the whole row (swapped in: the two buffers
            // take turns); several outputs' sit side by side.
            if single {
                std::mem::swap(&mut t.y, &mut self.y_batch);
            } else {
                t.y.clear();
                for row in self.y_batch.chunks(data.y_width) {
                    t.y.extend_from_slice(&row[offset..offset + y_width]);
                }
            }
            offset += y_width;
            for &(v, head) in &self.target_values {
                if head == k {
                    let len = rows * self.sizes[v];
                    self.acts[v][..len].copy_from_slice(&t.y[..len]);
                }
            }
            // Each step of a sequence output is scored with its sample's weight (the
            // output's own when there is one per output).
            if weighted {
                t.w.clear();
                let column = if data.w_width > 1 { k } else { 0 };
                for sample in self.w_batch.chunks(data.w_width).take(rows) {
                    t.w.extend(std::iter::repeat_n(sample[column], steps));
                }
            }
        }
        Ok(weighted)
    }

    /// Target values per sample of output `k`: class ids (one per step) for a
    /// sparse loss, else the output's size.
    fn target_width(&self, k: usize) -> usize {
        if self.head_values[k].is_some() {
            // a loss function reads the targets as given, through its Targets node
            if let Some(&(v, _)) = self.target_values.iter().find(|&&(_, h)| h == k) {
                return self.sizes[v];
            }
        }
        let sparse = self
            .compiled
            .as_ref()
            .is_some_and(|c| c.heads[k].loss.is_sparse());
        if sparse {
            self.output_steps(k)
        } else {
            self.sizes[self.outputs[k]]
        }
    }

    /// Values the loss scores together: output `k`'s last axis (classes), as in Keras.
    fn class_width(&self, k: usize) -> usize {
        self.shapes[self.outputs[k]]
            .last()
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// Loss terms per sample: output `k`'s positions before its last axis
    /// (time steps of a sequence output); the sample's loss is their mean.
    fn output_steps(&self, k: usize) -> usize {
        self.sizes[self.outputs[k]] / self.class_width(k)
    }

    /// The keep-mask of a (steps, classes) output, when the steps carry one
    /// (a sequence after Embedding(mask_zero) or Masking).
    fn output_mask(&self, k: usize, rows: usize) -> Option<&[bool]> {
        let v = self.outputs[k];
        (self.has_mask[v] && self.shapes[v].len() == 2)
            .then(|| &self.masks[v][..rows * self.output_steps(k)])
    }

    /// As Keras does, masked steps take no part in the loss: each kept step is
    /// weighted total/kept, so the mean runs over kept steps only. Metrics
    /// count kept steps only. Returns whether the batch's output `k` is masked.
    fn weigh_masked_steps(&mut self, k: usize, rows: usize, weighted: bool) -> bool {
        let mut t = std::mem::take(&mut self.targets[k]);
        let masked = match self.output_mask(k, rows) {
            None => false,
            Some(mask) => {
                let kept = mask.iter().filter(|&&m| m).count();
                let scale = mask.len() as f32 / kept.max(1) as f32;
                t.masked_loss_w.clear();
                t.masked_metric_w.clear();
                for (i, &m) in mask.iter().enumerate() {
                    let w = if weighted { t.w[i] } else { 1.0 };
                    t.masked_loss_w.push(if m { w * scale } else { 0.0 });
                    t.masked_metric_w.push(if m { 1.0 } else { 0.0 });
                }
                true
            }
        };
        self.targets[k] = t;
        masked
    }

    /// The batch's total loss (Σ weight × mean loss of each output) and each
    /// output's mean loss; their gradients into the output gradient buffers if asked.
    fn batch_loss(&mut self, rows: usize, weighted: bool, grad: bool) -> f64 {
        let mut total = 0.0;
        for k in 0..self.outputs.len() {
            if let Some(v) = self.head_values[k] {
                let value = self.traced_head_loss(k, v, rows, weighted, grad);
                let head = &self.compiled.as_ref().expect("checked").heads[k];
                total += head.weight as f64 * value;
                self.head_losses[k] = value;
                continue;
            }
            let (width, steps) = (self.class_width(k), self.output_steps(k));
            let terms = rows * steps;
            let masked = self.weigh_masked_steps(k, rows, weighted);
            let out = self.alias[self.outputs[k]];
            let head = &self.compiled.as_ref().expect("checked").heads[k];
            let t = &self.targets[k];
            let w = if masked {
                Some(&t.masked_loss_w[..terms])
            } else {
                weighted.then(|| &t.w[..terms])
            };
            let fused = grad && head.fused_softmax;
            // Two outputs in one buffer (an output and its Reshape): the later loss
            // gradient is computed aside and added.
            let shared = self.outputs[..k].iter().any(|&v| self.alias[v] == out);
            let len = terms * width;
            let grads = match (grad, shared) {
                (false, _) => None,
                (true, false) => Some(&mut self.grads[out][..len]),
                (true, true) => Some(&mut self.fanout_dx[..len]),
            };
            // The gradient of weight · Σ loss / terms: the weight folds into the norm
            // (exactly terms for one output of weight 1).
            let norm = if head.weight == 1.0 {
                terms as f32
            } else {
                terms as f32 / head.weight
            };
            let value = head.loss.evaluate(
                &t.y,
                t.y.len() / terms.max(1),
                &self.acts[out][..terms * width],
                width,
                w,
                norm,
                grads,
                fused,
            ) / terms as f64;
            if grad && shared {
                add_into(&mut self.grads[out][..len], &self.fanout_dx[..len]);
            }
            total += head.weight as f64 * value;
            self.head_losses[k] = value;
        }
        // Added losses count as they are: their gradient is one.
        for &v in &self.added_losses {
            total += self.acts[self.alias[v]][0] as f64;
            if grad {
                self.grads[self.alias[v]][0] = 1.0;
            }
        }
        total
    }

    /// Output `k`'s loss from the per-sample losses a traced loss function left in
    /// value `v`: Σ wᵢ·lossᵢ / rows, as Keras reduces a loss function's result; with
    /// `grad`, their gradients go to `v` and the output itself gets none directly.
    fn traced_head_loss(
        &mut self,
        k: usize,
        v: usize,
        rows: usize,
        weighted: bool,
        grad: bool,
    ) -> f64 {
        let steps = self.output_steps(k);
        let head_weight = self.compiled.as_ref().expect("checked").heads[k].weight;
        let t = &self.targets[k];
        let weight = |r: usize| if weighted { t.w[r * steps] } else { 1.0 };
        let losses = &self.acts[self.alias[v]][..rows];
        let total: f64 = losses
            .iter()
            .enumerate()
            .map(|(r, &l)| weight(r) as f64 * l as f64)
            .sum();
        if grad {
            let out = self.alias[self.outputs[k]];
            if !self.outputs[..k].iter().any(|&o| self.alias[o] == out) {
                let len = self.value_len(self.outputs[k], rows);
                self.grads[out][..len].fill(0.0);
            }
            let scale = head_weight / rows as f32;
            let dv = &mut self.grads[self.alias[v]][..rows];
            for (r, g) in dv.iter_mut().enumerate() {
                *g = scale * weight(r);
            }
        }
        total / rows.max(1) as f64
    }

    /// Adds the batch's losses and metrics (computed from the current outputs) to
    /// `totals`. With several outputs, `totals.metrics` starts with each output's
    /// loss, then holds every output's metrics in turn.
    fn score_batch(&self, rows: usize, loss_value: f64, totals: &mut Totals) {
        let compiled = self.compiled.as_ref().expect("compiled");
        let each = &self.head_losses;
        totals.loss_sum += loss_value * rows as f64;
        totals.samples += rows as f64;
        totals.batches += 1;
        let losses = if self.outputs.len() > 1 {
            each.len()
        } else {
            0
        };
        let count = losses
            + compiled
                .heads
                .iter()
                .map(|h| h.metrics.len())
                .sum::<usize>()
            + self.metric_values.len();
        totals.metrics.resize(count, (0.0, 0.0));
        for (acc, &value) in totals.metrics.iter_mut().zip(each).take(losses) {
            acc.0 += value * rows as f64;
            acc.1 += rows as f64;
        }
        let mut accs = totals.metrics[losses..].iter_mut();
        for (k, head) in compiled.heads.iter().enumerate() {
            let (width, steps) = (self.class_width(k), self.output_steps(k));
            let v = self.outputs[k];
            let out = &self.acts[self.alias[v]][..rows * self.sizes[v]];
            let t = &self.targets[k];
            // Keras weights only the loss by sample_weight; compiled metrics stay
            // unweighted (but skip masked steps).
            let w = self
                .output_mask(k, rows)
                .map(|_| &t.masked_metric_w[..rows * steps]);
            for (m, acc) in head.metrics.iter().zip(&mut accs) {
                m.update(&t.y, t.y.len() / (rows * steps).max(1), out, width, w, acc);
            }
        }
        // a metric function's value is its batch mean: weighed by the batch's samples
        for (&v, acc) in self.metric_values.iter().zip(accs) {
            acc.0 += self.acts[self.alias[v]][0] as f64 * rows as f64;
            acc.1 += rows as f64;
        }
    }

    /// Bytes the model holds in its weights, gradients, optimizer state and batch
    /// buffers (capacities, so what a drop gives back).
    pub fn held_bytes(&self) -> usize {
        let vecs = |v: &[Vec<f32>]| v.iter().map(Vec::capacity).sum::<usize>();
        let weights: usize = self
            .layers
            .iter()
            .flat_map(|l| l.params())
            .map(|p| p.value.len() + p.grad.len())
            .sum();
        let slots = self
            .compiled
            .as_ref()
            .map_or(0, |c| vecs(&c.optimizer.slots));
        let merge: usize = self.merge_dx.iter().map(|m| vecs(m)).sum();
        4 * (weights
            + slots
            + merge
            + vecs(&self.acts)
            + vecs(&self.grads)
            + self.fanout_dx.capacity())
    }

    /// The state training passes update themselves (BatchNormalization's moving
    /// statistics), kept to be put back when a step stops halfway; small.
    fn layer_state(&self) -> Vec<Vec<f32>> {
        let params = self.layers.iter().flat_map(|l| l.params());
        params
            .filter(|p| !p.trainable)
            .map(|p| p.value_slice().to_vec())
            .collect()
    }

    /// Puts back what `layer_state` kept.
    fn restore_layer_state(&mut self, state: Vec<Vec<f32>>) {
        let params = self.layers.iter_mut().flat_map(|l| l.params_mut());
        for (p, kept) in params.filter(|p| !p.trainable).zip(state) {
            p.value_slice_mut().copy_from_slice(&kept);
        }
    }

    /// Trains on the samples in `order`, `batch_size` at a time (the last batch
    /// may be smaller): forward, loss, backward, update for each.
    pub fn train(
        &mut self,
        data: &Dataset,
        order: &[u32],
        batch_size: usize,
        totals: &mut Totals,
    ) -> Result<()> {
        self.check_data(data)?;
        self.check_batch_memory(batch_size.max(1).min(order.len()), true)?;
        let mut idx = std::mem::take(&mut self.idx_batch);
        for batch in order.chunks(batch_size.max(1)) {
            idx.clear();
            idx.extend_from_slice(batch);
            let rows = idx.len();
            let mut clock = phases::Clock::start();
            crate::interrupt::check()?;
            let weighted = self.load_batch(data, &idx)?;
            self.check_batch(rows, None)?;
            let state = self.layer_state();
            self.sync_tied_weights();
            clock.lap(phases::GATHER);
            self.forward(rows, true, None, true);
            clock.lap(phases::FORWARD);
            let data_loss = self.batch_loss(rows, weighted, true);
            clock.lap(phases::LOSS);
            self.backward(rows);
            if crate::interrupt::poll() {
                // before the optimizer: the weights stay as the last whole step left them
                self.restore_layer_state(state);
                self.idx_batch = idx;
                return Err(crate::interrupt::interrupted());
            }
            self.gather_tied_grads();
            clock.lap(phases::BACKWARD);
            let reg = self.regularization();
            let Model {
                layers,
                compiled,
                tied,
                ..
            } = self;
            let mut params: Vec<&mut Param> = layers
                .iter_mut()
                .zip(tied.iter())
                .filter(|(_, t)| t.is_none())
                .flat_map(|(l, _)| l.params_mut().iter_mut())
                .collect();
            for p in params.iter_mut() {
                let trained = p.is_trained();
                let Param {
                    value,
                    grad,
                    regularizer,
                    ..
                } = &mut **p;
                if let (true, Some(r)) = (trained, regularizer) {
                    r.add_gradient(
                        value.as_slice().expect("contiguous"),
                        grad.as_slice_mut().expect("contiguous"),
                    );
                }
            }
            compiled
                .as_mut()
                .expect("checked")
                .optimizer
                .apply(&mut params);
            clock.lap(phases::OPTIMIZER);
            self.step += 1;
            self.score_batch(rows, data_loss + reg, totals);
            clock.lap(phases::METRICS);
        }
        self.idx_batch = idx;
        Ok(())
    }

    /// A custom loop's forward pass (`model(x, training=...)` under a GradientTape)
    /// on all `rows` samples of `x`: the outputs (side by side per sample, as
    /// `predict` gives them) go to `out`; the activations stay for `tape_backward`.
    pub fn tape_forward(&mut self, x: &[f32], training: bool, out: &mut [f32]) -> Result<usize> {
        let rows = self.samples_in(x.len())?;
        if out.len() != rows * self.output_size() {
            crate::bail!("tape_forward: output buffer of the wrong size");
        }
        self.check_batch_memory(rows, true)?;
        self.reserve(rows)?;
        self.acts[0][..x.len()].copy_from_slice(x);
        self.check_batch(rows, None)?;
        let state = if training { self.layer_state() } else { vec![] };
        self.sync_tied_weights();
        self.forward(rows, training, None, false);
        if crate::interrupt::poll() {
            self.restore_layer_state(state); // (the pass may have stopped halfway)
            return Err(crate::interrupt::interrupted());
        }
        if training {
            self.step += 1; // the next call draws other dropout masks
        }
        self.write_outputs(rows, None, out);
        Ok(rows)
    }

    /// Runs an earlier `tape_forward` again, with the random keys it had (`step`
    /// and `inference_batches` as they were before it), so that its backward can
    /// follow after another call replaced the kept activations. The layers' own
    /// state (moving statistics) is left as it is now.
    pub fn tape_replay(
        &mut self,
        x: &[f32],
        training: bool,
        step: u64,
        inference_batches: u64,
    ) -> Result<()> {
        let keys_now = (self.step, self.inference_batches);
        let state: Vec<Vec<f32>> = self
            .params()
            .filter(|p| !p.trainable)
            .map(|p| p.value_slice().to_vec())
            .collect();
        (self.step, self.inference_batches) = (step, inference_batches);
        let mut out = vec![0.0f32; self.samples_in(x.len())? * self.output_size()];
        let ran = self.tape_forward(x, training, &mut out);
        (self.step, self.inference_batches) = keys_now;
        let kept = self.params_mut().into_iter().filter(|p| !p.trainable);
        for (p, values) in kept.zip(state) {
            p.value
                .as_slice_mut()
                .expect("contiguous")
                .copy_from_slice(&values);
        }
        ran.map(|_| ())
    }

    /// The losses the layers' calls added (add_loss) that a forward pass without the
    /// targets computes: those of a compiled loss function read the targets.
    fn call_losses(&self) -> impl Iterator<Item = usize> + '_ {
        self.added_losses
            .iter()
            .copied()
            .filter(|&v| !(v > 0 && self.loss_only[v - 1]))
    }

    /// The values of `call_losses` after `tape_forward`.
    pub fn tape_call_losses(&self) -> Vec<f32> {
        self.call_losses()
            .map(|v| self.acts[self.alias[v]][0])
            .collect()
    }

    /// The gradients of `call_losses` for the next `tape_backward` (one each).
    pub fn seed_call_losses(&mut self, seeds: &[f32]) -> Result<()> {
        let n = self.call_losses().count();
        if seeds.len() != n {
            crate::bail!(
                "tape_backward: {} loss gradients for {n} added losses",
                seeds.len()
            );
        }
        self.call_loss_seeds = seeds.to_vec();
        Ok(())
    }

    /// The weights' gradients of Σ dy · outputs for the last `tape_forward` of
    /// `rows` samples, left in their `grad` (read them through `params()`); `dy`
    /// is laid out as its outputs were. Regularization is not added (in Keras it is
    /// part of `model.losses`). With `dx`, the gradient with respect to the inputs
    /// too (laid out as the input was given): what flows on into whatever made them.
    pub fn tape_backward_to(
        &mut self,
        rows: usize,
        dy: &[f32],
        dx: Option<&mut [f32]>,
    ) -> Result<()> {
        let in_len = rows * self.sizes[0];
        if dx.as_ref().is_some_and(|d| d.len() != in_len) {
            crate::bail!("tape_backward: input gradient buffer of the wrong size");
        }
        let out_size = self.output_size();
        if dy.len() != rows * out_size {
            crate::bail!(
                "tape_backward: {} output gradients for {rows} samples of {out_size}",
                dy.len()
            );
        }
        let mut at = 0;
        for &v in &self.outputs {
            let size = self.sizes[v];
            let g = &mut self.grads[self.alias[v]];
            if g.len() < rows * size {
                g.resize(rows * size, 0.0);
            }
            for r in 0..rows {
                g[r * size..][..size].copy_from_slice(&dy[r * out_size + at..][..size]);
            }
            at += size;
        }
        // The output's gradient is the one given, not a fused loss's.
        self.set_fused_outputs(false);
        if let Some(dx) = dx {
            // The input counts as having weights upstream, so every layer on the way
            // passes its input gradient back (restored after).
            let weights_only = std::mem::take(&mut self.upstream_weights);
            self.upstream_weights = self.upstream_of_input(&weights_only);
            if self.grads[0].len() < in_len {
                self.grads[0].resize(in_len, 0.0);
            }
            self.backward_pass(rows, false);
            if self.grad_written[0] {
                dx.copy_from_slice(&self.grads[0][..in_len]);
            } else {
                dx.fill(0.0); // (no output depends on the input)
            }
            self.upstream_weights = weights_only;
        } else {
            self.backward_pass(rows, false);
        }
        self.gather_tied_grads();
        self.set_fused_outputs(true);
        self.call_loss_seeds.clear();
        crate::interrupt::check()
    }

    /// `upstream_weights` with the input marked too: which values lie downstream of
    /// a weight or of the input.
    fn upstream_of_input(&self, weights_only: &[bool]) -> Vec<bool> {
        let mut marked = weights_only.to_vec();
        marked[0] = true;
        for i in 0..self.layers.len() {
            if self.inputs[i].iter().any(|&v| marked[v]) {
                marked[i + 1] = true;
            }
        }
        marked
    }

    /// Scores samples `start..end` in order, without training.
    pub fn evaluate(
        &mut self,
        data: &Dataset,
        start: usize,
        end: usize,
        batch_size: usize,
        totals: &mut Totals,
    ) -> Result<()> {
        self.check_data(data)?;
        self.check_batch_memory(batch_size.max(1).min(end.saturating_sub(start)), false)?;
        self.sync_tied_weights();
        let reg = self.regularization();
        let order: Vec<u32> = (start as u32..end.min(data.n) as u32).collect();
        for idx in order.chunks(batch_size.max(1)) {
            let rows = idx.len();
            let weighted = self.load_batch(data, idx)?;
            self.check_batch(rows, None)?;
            self.forward(rows, false, None, true);
            crate::interrupt::check()?;
            let loss = self.batch_loss(rows, weighted, false);
            self.score_batch(rows, loss + reg, totals);
        }
        Ok(())
    }

    /// Outputs for samples `start..end` of `x`, written to `out` (rows × output size).
    pub fn predict(
        &mut self,
        x: Features,
        start: usize,
        end: usize,
        batch_size: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let n = self.samples_in(x.len())?;
        let end = end.min(n);
        let out_size = self.output_size();
        if out.len() < (end.saturating_sub(start)) * out_size {
            crate::bail!("predict: output buffer too small");
        }
        self.check_batch_memory(batch_size.max(1).min(end.saturating_sub(start)), false)?;
        let order: Vec<u32> = (start as u32..end as u32).collect();
        self.sync_tied_weights();
        // NaN/inf in x: a first layer that can flags them among its pre-activations
        // (no extra pass over x); the batch is scanned to report where only then.
        // uint8 pixels are finite: neither is needed.
        let watcher = self
            .layers
            .iter()
            .position(|l| !l.is_reshape())
            .filter(|&i| self.inputs[i].len() == 1)
            .filter(|_| !matches!(x, Features::U8(_)))
            .filter(|&i| self.layers[i].watch_non_finite(true));
        let result = self.predict_batches(x, &order, batch_size, watcher, out);
        if let Some(i) = watcher {
            self.layers[i].watch_non_finite(false);
        }
        result
    }

    /// `predict`'s batch loop; `watcher` is the first layer when it flags NaN/inf.
    fn predict_batches(
        &mut self,
        x: Features,
        order: &[u32],
        batch_size: usize,
        watcher: Option<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let width = self.sizes[0];
        let out_size = self.output_size();
        let mut offset = 0;
        for idx in order.chunks(batch_size.max(1)) {
            let rows = idx.len();
            let first = idx[0] as usize * width;
            let scan = || x.first_non_finite(first, first + rows * width);
            let non_finite = |i: usize| {
                Error(format!(
                    "'x' contains NaN or inf (first in sample {}, at flat index {})",
                    i / width,
                    i % width
                ))
            };
            // Without a watching first layer, checked batch by batch: the batch is
            // then in cache for the first layer.
            if watcher.is_none() {
                if let Some(i) = scan() {
                    return Err(non_finite(i));
                }
            }
            self.reserve(rows)?;
            // float32 rows in order are read where they are; other dtypes are converted.
            let direct = match x {
                Features::F32(v) => Some(&v[idx[0] as usize * width..][..rows * width]),
                _ => {
                    x.gather(width, idx, &mut self.acts[0]);
                    None
                }
            };
            self.check_batch(rows, direct)?;
            self.forward(rows, false, direct, false);
            crate::interrupt::check()?;
            if watcher.is_some_and(|i| self.layers[i].saw_non_finite()) {
                if let Some(i) = scan() {
                    return Err(non_finite(i));
                }
            }
            self.write_outputs(rows, direct, &mut out[offset..offset + rows * out_size]);
            offset += rows * out_size;
        }
        Ok(())
    }

    /// The outputs of the batch of `rows` just run into `dest`, each sample's
    /// values side by side when there are several outputs.
    fn write_outputs(&self, rows: usize, input: Option<&[f32]>, dest: &mut [f32]) {
        if let [v] = self.outputs[..] {
            dest.copy_from_slice(self.output_values(v, rows, input));
            return;
        }
        let out_size = self.output_size();
        let mut at = 0;
        for &v in &self.outputs {
            let size = self.sizes[v];
            let values = self.output_values(v, rows, input);
            for (r, part) in values.chunks(size.max(1)).enumerate() {
                dest[r * out_size + at..][..size].copy_from_slice(part);
            }
            at += size;
        }
    }

    /// How many samples `len` input values hold (a whole number, or an error).
    fn samples_in(&self, len: usize) -> Result<usize> {
        let width = self.sizes[0];
        if width == 0 || !len.is_multiple_of(width) {
            crate::bail!("x has {len} values, not a whole number of samples of {width} values");
        }
        Ok(len / width)
    }

    /// Value `v` for the batch just run (read from the input itself when the
    /// model's output is its input).
    fn output_values<'a>(&'a self, v: usize, rows: usize, input: Option<&'a [f32]>) -> &'a [f32] {
        let len = rows * self.sizes[v];
        match input {
            Some(input) if self.alias[v] == 0 => &input[..len],
            _ => &self.acts[self.alias[v]][..len],
        }
    }

    fn check_data(&self, data: &Dataset) -> Result<()> {
        if self.compiled.is_none() {
            crate::bail!(
                "the model must be compiled before training or evaluating: call compile()"
            );
        }
        if data.x_width != self.sizes[0] {
            crate::bail!(
                "expected samples of {} values (shape {:?}), got {}",
                self.sizes[0],
                self.shapes[0],
                data.x_width
            );
        }
        if data.w_width != 1 && data.w_width != self.outputs.len() {
            crate::bail!(
                "expected one sample weight per sample, or one per output ({}), got {}",
                self.outputs.len(),
                data.w_width
            );
        }
        let want_y: usize = (0..self.outputs.len()).map(|k| self.target_width(k)).sum();
        if data.y_width != want_y {
            crate::bail!(
                "expected targets of {want_y} values per sample, got {}",
                data.y_width
            );
        }
        Ok(())
    }
}

/// Lets each layer take over a max pool that reads its output where it can (see
/// `Layer::absorb_max_pool`); returns which layers were taken over. Only where
/// the pool is the output's one reader, and not across a time-step mask, which
/// the pair would have to carry.
fn fuse_max_pools(
    layers: &mut [Box<dyn Layer>],
    inputs: &[Vec<usize>],
    consumers: &[usize],
    has_mask: &[bool],
    outputs: &[usize],
) -> Vec<bool> {
    let mut absorbed = vec![false; layers.len()];
    for j in 0..layers.len() {
        let [v] = inputs[j][..] else { continue };
        // Value v is written by layer v - 1, which must read a single input too.
        if v == 0 || consumers[v] != 1 || outputs.contains(&v) || inputs[v - 1].len() != 1 {
            continue;
        }
        let p = v - 1;
        if absorbed[p] || has_mask[inputs[p][0]] || has_mask[v] {
            continue;
        }
        let (before, after) = layers.split_at_mut(j);
        if let Some(window) = after[0].tiling_max_pool() {
            absorbed[j] = before[p].absorb_max_pool(window);
        }
    }
    absorbed
}

/// `dst += src`, elementwise.
fn add_into(dst: &mut [f32], src: &[f32]) {
    crate::parallel::for_each_block(dst, |at, block| {
        for (d, &s) in block.iter_mut().zip(&src[at..]) {
            *d += s;
        }
    });
}

/// A layer's name for messages: `Dense 'dense_1'`.
pub fn layer_name(spec: &Value) -> String {
    let class = spec["class_name"].as_str().unwrap_or("layer");
    match spec["config"]["name"].as_str() {
        Some(name) => format!("{class} '{name}'"),
        None => class.to_string(),
    }
}

/// The model's outputs: the spec's `outputs` (distinct values), else the last value.
fn spec_outputs(spec: &Value, n: usize) -> Result<Vec<usize>> {
    let Some(list) = spec.get("outputs").filter(|v| !v.is_null()) else {
        return Ok(vec![n - 1]);
    };
    let values: Option<Vec<usize>> = list.as_array().filter(|a| !a.is_empty()).and_then(|a| {
        a.iter()
            .map(|v| v.as_u64().map(|v| v as usize).filter(|&v| v < n))
            .collect()
    });
    match values {
        Some(v) if (1..v.len()).all(|i| !v[..i].contains(&v[i])) => Ok(v),
        _ => Err(Error(format!(
            "model spec: 'outputs' must be distinct values below {n}, got {list}"
        ))),
    }
}

/// The spec's `added_losses` (values added to the loss) or `metric_values` (values
/// reported as metrics): layer outputs.
fn spec_scalar_values(spec: &Value, key: &str, n: usize) -> Result<Vec<usize>> {
    let Some(list) = spec.get(key).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    list.as_array()
        .and_then(|a| {
            a.iter()
                .map(|v| v.as_u64().map(|v| v as usize).filter(|&v| v > 0 && v < n))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| {
            Error(format!(
                "model spec: '{key}' must be layer outputs (values 1..{n}), got {list}"
            ))
        })
}

/// The spec's `head_values`: per output, null or the value that holds each
/// sample's loss from a traced loss function.
fn spec_head_values(spec: &Value, n: usize, outputs: usize) -> Result<Vec<Option<usize>>> {
    let Some(list) = spec.get("head_values").filter(|v| !v.is_null()) else {
        return Ok(vec![None; outputs]);
    };
    list.as_array()
        .filter(|a| a.len() == outputs)
        .and_then(|a| {
            a.iter()
                .map(|v| match v {
                    Value::Null => Some(None),
                    v => v
                        .as_u64()
                        .map(|v| v as usize)
                        .filter(|&v| v > 0 && v < n)
                        .map(Some),
                })
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| {
            Error(format!(
                "model spec: 'head_values' must give each of the {outputs} outputs null or a \
                 layer output (values 1..{n}), got {list}"
            ))
        })
}

fn sizes_of(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The spec's list under `key` with one entry per layer, or None when absent.
fn per_layer_entries<'a>(spec: &'a Value, key: &str, layers: usize) -> Result<Option<&'a [Value]>> {
    let Some(value) = spec.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    value
        .as_array()
        .filter(|a| a.len() == layers)
        .map(|a| Some(&a[..]))
        .ok_or_else(|| {
            Error(format!(
                "model spec: '{key}' must have one entry for each of the {layers} layers"
            ))
        })
}

/// Per layer, the training mode its call fixes: the spec's `training` (null where
/// the call follows the model), or none fixed when absent.
fn fixed_training_modes(spec: &Value, layers: &[Value]) -> Result<Vec<Option<bool>>> {
    let Some(list) = per_layer_entries(spec, "training", layers.len())? else {
        return Ok(vec![None; layers.len()]);
    };
    list.iter()
        .enumerate()
        .map(|(j, v)| match v {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            v => Err(Error(format!(
                "model spec: the training mode of {} must be true, false or null, got {v}",
                layer_name(&layers[j])
            ))),
        })
        .collect()
}

/// Per layer, the earlier layer it shares weights with: the spec's `shares`
/// (null for a layer with weights of its own), or none at all when absent.
fn shared_layers(spec: &Value, layers: &[Value]) -> Result<Vec<Option<usize>>> {
    let Some(list) = per_layer_entries(spec, "shares", layers.len())? else {
        return Ok(vec![None; layers.len()]);
    };
    list.iter()
        .enumerate()
        .map(|(j, v)| match v {
            Value::Null => Ok(None),
            v => match v.as_u64().map(|i| i as usize) {
                Some(i) if i < j && layers[i]["class_name"] == layers[j]["class_name"] => {
                    Ok(Some(i))
                }
                _ => Err(Error(format!(
                    "model spec: {} can only share the weights of an earlier layer of its \
                     class, got {v}",
                    layer_name(&layers[j])
                ))),
            },
        })
        .collect()
}

/// The values each layer reads: the spec's `inbound` lists (value 0 is the
/// model's input, value i + 1 layer i's output), or the previous value for
/// every layer when the spec has none (a chain).
fn inbound_values(spec: &Value, layers: &[Value]) -> Result<Vec<Vec<usize>>> {
    let Some(inbound) = spec.get("inbound").filter(|v| !v.is_null()) else {
        return Ok((0..layers.len()).map(|i| vec![i]).collect());
    };
    let lists = inbound
        .as_array()
        .filter(|a| a.len() == layers.len())
        .ok_or_else(|| {
            Error(format!(
                "model spec: 'inbound' must list the inputs of each of the {} layers",
                layers.len()
            ))
        })?;
    lists
        .iter()
        .enumerate()
        .map(|(i, list)| {
            // (only a weight or a constant reads nothing)
            let source = layers[i]["class_name"]
                .as_str()
                .is_some_and(layers::is_source_class);
            let values: Option<Vec<usize>> = list
                .as_array()
                .filter(|a| a.is_empty() == source)
                .and_then(|a| {
                    a.iter()
                        .map(|v| v.as_u64().map(|v| v as usize).filter(|&v| v <= i))
                        .collect()
                });
            values.ok_or_else(|| {
                Error(format!(
                    "model spec: the inputs of {} must be values made before it \
                     (0..={i}), got {list}",
                    layer_name(&layers[i])
                ))
            })
        })
        .collect()
}

/// Elements zero-filled between two interrupt checks when a buffer grows (64 MB).
const GROW_CHUNK: usize = 1 << 24;

/// Grows `buf` to `len` zeros past its contents: one exact allocation, filled in
/// chunks with an interrupt check before each.
fn grow(buf: &mut Vec<f32>, len: usize) -> Result<()> {
    buf.reserve_exact(len.saturating_sub(buf.len()));
    while buf.len() < len {
        crate::interrupt::check()?;
        let next = len.min(buf.len() + GROW_CHUNK);
        buf.resize(next, 0.0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, Features};
    use serde_json::json;

    fn dense(name: &str, units: usize, activation: &str) -> Value {
        json!({"class_name": "Dense", "config": {"name": name, "units": units,
               "activation": activation}})
    }

    fn layer(class: &str, name: &str, config: Value) -> Value {
        let mut config = config;
        config["name"] = json!(name);
        json!({"class_name": class, "config": config})
    }

    fn compiled(spec: Value) -> Model {
        let mut model = Model::from_spec(&spec).expect("valid spec");
        model
            .compile(&json!({"loss": "mean_squared_error",
                             "optimizer": {"name": "sgd", "learning_rate": 0.1}}))
            .expect("valid compile spec");
        model
    }

    /// Trains two epochs of 8 samples (inputs of `width`, targets of `out`) at batch 4.
    fn trained_weights(model: &mut Model, width: usize, out: usize) -> Vec<Vec<f32>> {
        let x: Vec<f32> = (0..8 * width)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let y: Vec<f32> = (0..8 * out)
            .map(|i| ((i * 13 % 5) as f32 - 2.0) / 3.0)
            .collect();
        let data = Dataset::new(Features::F32(&x), width, &y, out, None).unwrap();
        let order: Vec<u32> = (0..8).collect();
        let mut totals = Totals::default();
        for _ in 0..2 {
            model.train(&data, &order, 4, &mut totals).unwrap();
        }
        model.params().map(|p| p.value_slice().to_vec()).collect()
    }

    #[test]
    fn explicit_chain_inbound_is_the_chain() {
        let layers = json!([
            dense("a", 5, "relu"),
            dense("b", 3, "tanh"),
            dense("c", 2, "linear")
        ]);
        let chain = json!({"input_shape": [4], "seed": 7, "layers": layers});
        let graph = json!({"input_shape": [4], "seed": 7, "layers": layers,
                           "inbound": [[0], [1], [2]]});
        let a = trained_weights(&mut compiled(chain), 4, 2);
        let b = trained_weights(&mut compiled(graph), 4, 2);
        assert_eq!(a, b);
    }

    fn with_dropout(rate: f32, training: Value) -> Value {
        json!({"input_shape": [4], "seed": 7,
               "layers": [dense("a", 6, "relu"),
                          layer("Dropout", "drop", json!({"rate": rate})),
                          dense("c", 2, "linear")],
               "training": training})
    }

    #[test]
    fn a_call_fixed_to_inference_does_not_drop_in_training() {
        let off = trained_weights(
            &mut compiled(with_dropout(0.5, json!([null, false, null]))),
            4,
            2,
        );
        let none = trained_weights(&mut compiled(with_dropout(0.0, json!(null))), 4, 2);
        let on = trained_weights(&mut compiled(with_dropout(0.5, json!(null))), 4, 2);
        assert_eq!(off, none);
        assert_ne!(on, none);
    }

    #[test]
    fn a_call_fixed_to_training_drops_in_predict() {
        let x: Vec<f32> = (0..8).map(|i| i as f32 / 4.0 - 1.0).collect();
        let predict = |training: Value| {
            let mut model = compiled(with_dropout(0.5, training));
            let mut out = vec![0.0; 4];
            model.predict(Features::F32(&x), 0, 2, 2, &mut out).unwrap();
            out
        };
        assert_ne!(predict(json!([null, true, null])), predict(json!(null)));
        let mut model = compiled(with_dropout(0.5, json!([null, true, null])));
        let mut first = vec![0.0; 4];
        let mut second = vec![0.0; 4];
        model
            .predict(Features::F32(&x), 0, 2, 2, &mut first)
            .unwrap();
        model
            .predict(Features::F32(&x), 0, 2, 2, &mut second)
            .unwrap();
        assert_ne!(first, second, "each prediction draws new masks");
        assert_eq!(predict(json!([null, false, null])), predict(json!(null)));
    }

    #[test]
    fn a_training_mode_that_is_not_a_bool_is_refused_with_the_layer() {
        let err = Model::from_spec(&with_dropout(0.5, json!([null, 1, null])))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("'drop'"), "{err}");
        let err = Model::from_spec(&with_dropout(0.5, json!([null])))
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("one entry for each of the 3"),
            "{err}"
        );
    }

    /// Dense(3, tanh) on 4 inputs written as a traced graph: weights as Variable
    /// nodes, the product, the bias and the activation as op nodes.
    fn traced_dense() -> Value {
        let var = |name: &str, shape: Value| {
            layer(
                "Variable",
                name,
                json!({"shape": shape, "initializer": "zeros"}),
            )
        };
        let op = |name: &str, op: &str| layer("Op", name, json!({"op": op}));
        json!({"input_shape": [4], "seed": 7,
               "layers": [var("kernel", json!([4, 3])), op("matmul", "matmul"),
                          var("bias", json!([3])), op("add", "add"), op("tanh", "tanh")],
               "inbound": [[], [0, 1], [], [2, 3], [4]]})
    }

    fn set_params(model: &mut Model, values: &[Vec<f32>]) {
        for (p, v) in model.params_mut().into_iter().zip(values) {
            p.value_slice_mut().copy_from_slice(v);
        }
    }

    #[test]
    fn a_traced_graph_of_weights_and_ops_trains_as_the_layer_it_spells() {
        let kernel: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) / 9.0).collect();
        let bias = vec![0.1, -0.2, 0.3];
        let mut built_in = compiled(json!({"input_shape": [4], "seed": 7,
                                           "layers": [dense("d", 3, "tanh")]}));
        let mut traced = compiled(traced_dense());
        set_params(&mut built_in, &[kernel.clone(), bias.clone()]);
        set_params(&mut traced, &[kernel, bias]);
        // weights have no batch axis; the product and what follows have one
        assert_eq!(traced.batched, vec![true, false, true, false, true, true]);
        let a = trained_weights(&mut built_in, 4, 3);
        let b = trained_weights(&mut traced, 4, 3);
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        assert_ne!(
            a[0],
            (0..12).map(|i| (i as f32 - 5.5) / 9.0).collect::<Vec<_>>()
        );
    }

    #[test]
    fn values_without_a_batch_axis_are_checked() {
        // a reduction over the batch axis cannot be the output...
        let mut spec = traced_dense();
        spec["layers"][4] = layer("Op", "total", json!({"op": "sum", "attrs": {}}));
        let err = Model::from_spec(&spec)
            .err()
            .expect("an output without a batch axis");
        assert!(err.0.contains("no batch axis"), "{}", err.0);
        // ...nor the input of a layer that works on samples
        let spec = json!({"input_shape": [4], "seed": 7,
                          "layers": [layer("Variable", "w", json!({"shape": [4]})),
                                     dense("d", 2, "linear")],
                          "inbound": [[], [1]], "outputs": [2]});
        let err = Model::from_spec(&spec).err().expect("Dense on a weight");
        assert!(
            err.0.contains("Dense 'd'") && err.0.contains("(4,)"),
            "{}",
            err.0
        );
        // a weight reads nothing, and every other node reads something
        let spec = json!({"input_shape": [4], "layers": [dense("d", 2, "linear")],
                          "inbound": [[]]});
        assert!(Model::from_spec(&spec).is_err());
    }

    #[test]
    fn a_per_sample_traced_loss_is_weighted_as_the_built_in_loss() {
        let spec = |traced: bool| {
            let mut layers = vec![dense("d", 3, "tanh")];
            let mut inbound = vec![json!([0])];
            let mut head_values = json!(null);
            if traced {
                // mean((targets - output) ** 2, axis=-1): one loss per sample
                let op = |name: &str, op: &str| layer("Op", name, json!({"op": op}));
                layers.push(layer("Targets", "t", json!({"head": 0, "shape": [3]})));
                layers.push(op("diff", "subtract"));
                layers.push(op("sq", "square"));
                layers.push(layer(
                    "Op",
                    "mean",
                    json!({"op": "mean", "attrs": {"axis": -1}}),
                ));
                inbound.extend([json!([]), json!([2, 1]), json!([3]), json!([4])]);
                head_values = json!([5]);
            }
            json!({"input_shape": [4], "seed": 7, "layers": layers, "inbound": inbound,
                   "outputs": [1], "head_values": head_values})
        };
        let x: Vec<f32> = (0..32)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0)
            .collect();
        let y: Vec<f32> = (0..24).map(|i| ((i * 13 % 5) as f32 - 2.0) / 3.0).collect();
        let w: Vec<f32> = (0..8).map(|i| (i % 3) as f32 * 0.5).collect();
        let mut runs = Vec::new();
        for traced in [false, true] {
            let loss = if traced {
                "traced"
            } else {
                "mean_squared_error"
            };
            let mut model = Model::from_spec(&spec(traced)).expect("valid spec");
            model
                .compile(&json!({"loss": loss, "optimizer": {"name": "sgd", "learning_rate": 0.1}}))
                .expect("valid compile");
            let data = Dataset::new(Features::F32(&x), 4, &y, 3, Some(&w)).unwrap();
            let order: Vec<u32> = (0..8).collect();
            let mut totals = Totals::default();
            model.train(&data, &order, 4, &mut totals).unwrap();
            let weights: Vec<f32> = model
                .params()
                .flat_map(|p| p.value_slice().to_vec())
                .collect();
            runs.push((weights, totals.loss_sum));
        }
        for (a, b) in runs[0].0.iter().zip(&runs[1].0) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert!((runs[0].1 - runs[1].1).abs() < 1e-6 * runs[0].1.abs().max(1.0));
        let mut bad = spec(true);
        bad["head_values"] = json!([4]);
        let err = Model::from_spec(&bad)
            .err()
            .expect("not one number per sample");
        assert!(err.0.contains("one number per sample"), "{}", err.0);
        bad["head_values"] = json!([5, null]);
        let err = Model::from_spec(&bad).err().expect("one entry too many");
        assert!(
            err.0
                .contains("'head_values' must give each of the 1 outputs null or a layer"),
            "{}",
            err.0
        );
    }

    #[test]
    fn a_loss_traced_from_the_targets_trains_as_the_built_in_loss() {
        let spec = |traced: bool| {
            let mut layers = vec![dense("d", 3, "tanh")];
            let mut inbound = vec![json!([0])];
            if traced {
                // mean((targets - output) ** 2): the mean squared error, spelled with ops
                let op = |name: &str, op: &str| layer("Op", name, json!({"op": op}));
                layers.push(layer("Targets", "t", json!({"head": 0, "shape": [3]})));
                layers.push(op("diff", "subtract"));
                layers.push(op("sq", "square"));
                layers.push(layer("Op", "mean", json!({"op": "mean", "attrs": {}})));
                inbound.extend([json!([]), json!([2, 1]), json!([3]), json!([4])]);
            }
            json!({"input_shape": [4], "seed": 7, "layers": layers, "inbound": inbound,
                   "outputs": [1], "added_losses": if traced { json!([5]) } else { json!([]) }})
        };
        let compile = |traced: bool| {
            let loss = if traced {
                "traced"
            } else {
                "mean_squared_error"
            };
            json!({"loss": loss, "optimizer": {"name": "sgd", "learning_rate": 0.1}})
        };
        let mut runs = Vec::new();
        for traced in [false, true] {
            let mut model = Model::from_spec(&spec(traced)).expect("valid spec");
            model.compile(&compile(traced)).expect("valid compile");
            let weights = trained_weights(&mut model, 4, 3);
            // predict needs no targets: the loss's nodes are skipped
            let x = vec![0.5f32; 8];
            let mut out = vec![0.0f32; 6];
            model
                .predict(Features::F32(&x), 0, 2, 2, &mut out)
                .expect("predicts");
            runs.push((weights, out));
        }
        for (a, b) in runs[0].0.iter().flatten().zip(runs[1].0.iter().flatten()) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert_eq!(runs[0].1, runs[1].1);
        // an output may not depend on the targets
        let mut bad = spec(true);
        bad["outputs"] = json!([3]);
        let err = Model::from_spec(&bad)
            .err()
            .expect("an output reading the targets");
        assert!(err.0.contains("depends on the targets"), "{}", err.0);
    }

    #[test]
    fn fan_out_gradients_are_summed() {
        // h + h through Add (one layer reading one value twice), and h through
        // two Rescaling(1) readers then Add (two layers reading one value),
        // against h scaled by 2: the same function, so the same bits.
        let h = dense("h", 3, "tanh");
        let scaled = json!({"input_shape": [4], "seed": 3, "layers": [
            h, layer("Rescaling", "r", json!({"scale": 2.0}))]});
        let twice = json!({"input_shape": [4], "seed": 3, "layers": [
            h, layer("Add", "add", json!({}))], "inbound": [[0], [1, 1]]});
        let two_readers = json!({"input_shape": [4], "seed": 3, "layers": [
            h, layer("Rescaling", "r1", json!({"scale": 1.0})),
            layer("Rescaling", "r2", json!({"scale": 1.0})), layer("Add", "add", json!({}))],
            "inbound": [[0], [1], [1], [2, 3]]});
        let want = trained_weights(&mut compiled(scaled), 4, 3);
        assert_eq!(trained_weights(&mut compiled(twice), 4, 3), want);
        assert_eq!(trained_weights(&mut compiled(two_readers), 4, 3), want);
    }

    /// The engine's gradient of the first weight after one backward pass over all
    /// of `data`, beside central differences of the (total) loss.
    fn first_weight_gradients(build: &dyn Fn() -> Model, data: &Dataset) -> Vec<(f32, f64)> {
        let rows = data.n;
        let idx: Vec<u32> = (0..rows as u32).collect();
        let loss_at = |model: &mut Model| {
            let mut t = Totals::default();
            model.evaluate(data, 0, rows, rows, &mut t).unwrap();
            t.loss_sum / t.samples
        };
        let mut model = build();
        model.load_batch(data, &idx).unwrap();
        model.sync_tied_weights();
        model.forward(rows, true, None, true);
        model.batch_loss(rows, false, true);
        model.backward(rows);
        model.gather_tied_grads();
        let analytic: Vec<f32> = model
            .params()
            .next()
            .unwrap()
            .grad
            .iter()
            .copied()
            .collect();
        let eps = 1e-2f32;
        analytic
            .iter()
            .enumerate()
            .map(|(k, &g)| {
                let mut plus = build();
                plus.params_mut()[0].value_slice_mut()[k] += eps;
                let mut minus = build();
                minus.params_mut()[0].value_slice_mut()[k] -= eps;
                (
                    g,
                    (loss_at(&mut plus) - loss_at(&mut minus)) / (2.0 * eps as f64),
                )
            })
            .collect()
    }

    fn assert_gradients_match(pairs: Vec<(f32, f64)>, tolerance: f64) {
        for (k, (g, numeric)) in pairs.into_iter().enumerate() {
            assert!(
                (numeric - g as f64).abs() < tolerance,
                "weight {k}: {numeric} vs {g}"
            );
        }
    }

    const X: [f32; 6] = [0.3, -0.7, 0.5, 0.1, 0.9, -0.4];

    #[test]
    fn residual_block_gradient_matches_finite_differences() {
        // x -> a = Dense(4, tanh) -> b = Dense(4, tanh)(a) -> Add(a, b) -> Dense(2):
        // every path to the first kernel goes through the fan-out of a.
        let spec = json!({"input_shape": [3], "seed": 11, "layers": [
            dense("a", 4, "tanh"), dense("b", 4, "tanh"), layer("Add", "add", json!({})),
            dense("out", 2, "linear")], "inbound": [[0], [1], [1, 2], [3]]});
        let y = [0.2, -0.1, 0.4, 0.3];
        let data = Dataset::new(Features::F32(&X), 3, &y, 2, None).unwrap();
        assert_gradients_match(
            first_weight_gradients(&|| compiled(spec.clone()), &data),
            1e-3,
        );
    }

    #[test]
    fn a_shared_layer_holds_one_set_of_weights_whose_gradients_add() {
        // x -> a -> a (the same Dense twice) -> Dense(2)
        let shared = dense("a", 3, "tanh");
        let spec = json!({"input_shape": [3], "seed": 5, "layers": [
            shared, shared, dense("out", 2, "linear")], "inbound": [[0], [1], [2]],
            "shares": [null, 0, null]});
        let model = compiled(spec.clone());
        assert_eq!(
            model.params().count(),
            4,
            "the shared kernel and bias count once"
        );
        let y = [0.2, -0.1, 0.4, 0.3];
        let data = Dataset::new(Features::F32(&X), 3, &y, 2, None).unwrap();
        assert_gradients_match(
            first_weight_gradients(&|| compiled(spec.clone()), &data),
            1e-3,
        );
        let mut a = compiled(spec);
        let weights = trained_weights(&mut a, 3, 2);
        assert_eq!(weights.len(), 4);
        // each run gives the second call the first's current weights
        a.predict(Features::F32(&X), 0, 2, 2, &mut [0.0; 4])
            .unwrap();
        assert_eq!(
            a.layers[1].params()[0].value_slice(),
            a.layers[0].params()[0].value_slice()
        );
        let bad = json!({"input_shape": [3], "layers": [dense("a", 3, "tanh"),
            dense("b", 3, "tanh")], "shares": [null, 1]});
        assert!(Model::from_spec(&bad).is_err());
    }

    #[test]
    fn several_outputs_add_their_weighted_losses() {
        // x -> a = Dense(4, tanh); outputs: a itself (also read by b) and b = Dense(2)(a).
        let spec = json!({"input_shape": [3], "seed": 9, "layers": [
            dense("a", 4, "tanh"), dense("b", 2, "linear")], "outputs": [1, 2]});
        let compile = json!({"optimizer": {"name": "sgd", "learning_rate": 0.1}, "outputs": [
            {"loss": "mean_squared_error", "weight": 0.5},
            {"loss": "mean_absolute_error", "weight": 2.0, "metrics": ["mean_absolute_error"]}]});
        let build = || {
            let mut m = Model::from_spec(&spec).unwrap();
            m.compile(&compile).unwrap();
            m
        };
        let y = [
            0.2, -0.1, 0.4, 0.3, 0.5, 0.6, 0.1, -0.2, 0.0, 0.7, -0.3, 0.2,
        ];
        let data = Dataset::new(Features::F32(&X), 3, &y, 6, None).unwrap();
        let mut t = Totals::default();
        build().evaluate(&data, 0, 2, 2, &mut t).unwrap();
        // the total, then each output's loss, then output 2's metric (its loss here)
        assert_eq!(t.metrics.len(), 3);
        let (l1, l2) = (t.metrics[0].0 / 2.0, t.metrics[1].0 / 2.0);
        assert!((t.loss_sum / 2.0 - (0.5 * l1 + 2.0 * l2)).abs() < 1e-9);
        assert!((t.metrics[2].0 / t.metrics[2].1 - l2).abs() < 1e-6);
        assert_gradients_match(first_weight_gradients(&build, &data), 2e-3);
        let mut out = vec![0.0; 2 * 6];
        build()
            .predict(Features::F32(&X), 0, 2, 2, &mut out)
            .unwrap();
        let bad = json!({"input_shape": [3], "layers": [dense("a", 4, "tanh")], "outputs": [1, 1]});
        assert!(Model::from_spec(&bad).is_err());
    }

    #[test]
    fn softmax_fuses_with_cross_entropy_only_where_the_loss_alone_reads_it() {
        // s = Dense(3, softmax) is an output (cross-entropy) and also read by t = Dense(2).
        let spec = json!({"input_shape": [3], "seed": 4, "layers": [
            dense("s", 3, "softmax"), dense("t", 2, "linear")], "outputs": [1, 2]});
        let compile = json!({"optimizer": {"name": "sgd", "learning_rate": 0.1}, "outputs": [
            {"loss": "categorical_crossentropy"}, {"loss": "mean_squared_error"}]});
        let build = || {
            let mut m = Model::from_spec(&spec).unwrap();
            m.compile(&compile).unwrap();
            m
        };
        assert!(!build().compiled.unwrap().heads[0].fused_softmax);
        let y = [0.0, 1.0, 0.0, 0.5, -0.5, 1.0, 0.0, 0.0, 0.2, 0.1];
        let data = Dataset::new(Features::F32(&X), 3, &y, 5, None).unwrap();
        assert_gradients_match(first_weight_gradients(&build, &data), 2e-3);
        // read by the loss alone, it fuses
        let single = compiled(json!({"input_shape": [3], "layers": [dense("s", 3, "softmax")]}));
        let mut fused = Model::from_spec(&json!({"input_shape": [3], "layers": [
            dense("s", 3, "softmax")]}))
        .unwrap();
        fused
            .compile(&json!({"loss": "categorical_crossentropy", "optimizer": {"name": "sgd"}}))
            .unwrap();
        assert!(fused.compiled.unwrap().heads[0].fused_softmax);
        assert!(
            !single.compiled.unwrap().heads[0].fused_softmax,
            "mse does not fuse"
        );
    }

    #[test]
    fn a_max_pool_is_fused_only_into_its_one_reader() {
        let conv = layer(
            "Conv2D",
            "conv",
            json!({"filters": 2, "kernel_size": [3, 3],
            "strides": [1, 1], "padding": "valid", "dilation_rate": [1, 1], "activation": "relu"}),
        );
        let pool = layer(
            "MaxPooling2D",
            "pool",
            json!({"pool_size": [2, 2], "padding": "valid"}),
        );
        let chain = Model::from_spec(&json!({"input_shape": [6, 6, 1], "layers": [
            conv, pool, layer("Flatten", "f", json!({}))]}))
        .unwrap();
        assert_eq!(chain.absorbed, vec![false, true, false]);
        // The convolution's output also feeds a second pool: no fusion.
        let pool2 = layer(
            "MaxPooling2D",
            "pool2",
            json!({"pool_size": [2, 2], "padding": "valid"}),
        );
        let branched = Model::from_spec(&json!({"input_shape": [6, 6, 1], "layers": [
            conv, pool, pool2, layer("Add", "add", json!({}))],
            "inbound": [[0], [1], [1], [2, 3]]}))
        .unwrap();
        assert_eq!(branched.absorbed, vec![false, false, false, false]);
    }

    #[test]
    fn bad_graph_specs_are_errors() {
        let err = |spec: Value| Model::from_spec(&spec).err().expect("an error").0;
        let e = err(json!({"input_shape": [4], "layers": [dense("a", 3, "relu"),
                           dense("b", 3, "relu")], "inbound": [[0], [2]]}));
        assert!(e.contains("Dense 'b'") && e.contains("made before"), "{e}");
        // A value nothing reads is computed and sends back no gradient: a stays as it was.
        let mut unread = compiled(json!({"input_shape": [4], "layers": [dense("a", 3, "relu"),
                           dense("b", 3, "relu")], "inbound": [[0], [0]]}));
        let before = unread.params().next().unwrap().value_slice().to_vec();
        trained_weights(&mut unread, 4, 3);
        assert_eq!(unread.params().next().unwrap().value_slice(), &before[..]);
        let e = err(json!({"input_shape": [4], "layers": [dense("a", 3, "relu"),
                           dense("b", 3, "relu")], "inbound": [[0], [0, 1]]}));
        assert!(e.contains("takes one input, got 2"), "{e}");
    }
}
