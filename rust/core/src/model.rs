//! A sequential model: the layer stack, its reused buffers, and the batch loop.

use crate::activation::Activation;
use crate::data::{Dataset, Features};
use crate::error::{Error, Result};
use crate::layers::{self, Ctx, Layer, MaskFlow, Param};
use crate::loss::Loss;
use crate::metrics::Metric;
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
    pub loss: Loss,
    pub optimizer: Optimizer,
    pub metrics: Vec<Metric>,
    /// The last layer ends in softmax and the loss is cross-entropy on its
    /// probabilities: the loss gives the gradient with respect to the logits.
    pub fused_softmax: bool,
}

pub struct Model {
    layers: Vec<Box<dyn Layer>>,
    /// Per-sample shapes: [input, output of layer 0, output of layer 1, ...].
    shapes: Vec<Vec<usize>>,
    sizes: Vec<usize>,
    /// Boundary whose buffer holds boundary i's values: reshapes share their
    /// input's buffer instead of copying it.
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
    y_batch: Vec<f32>,
    w_batch: Vec<f32>,
    /// Per-step loss and metric weights of a masked sequence output.
    masked_loss_w: Vec<f32>,
    masked_metric_w: Vec<f32>,
    idx_batch: Vec<u32>,
    key: Key,
    /// Training steps run; keys dropout masks.
    pub step: u64,
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
        let seed = spec.get("seed").and_then(Value::as_u64).unwrap_or(0);
        let key = Key::new(seed);
        let specs = spec
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| Error("model spec needs 'layers'".into()))?;
        let mut shapes = vec![input_shape];
        let mut built = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            let mut layer =
                layers::build(s, shapes.last().expect("non-empty"), key.fold(i as u64))?;
            if s["config"]["trainable"] == Value::Bool(false) {
                layer.params_mut().iter_mut().for_each(|p| p.frozen = true);
            }
            shapes.push(layer.output_shape().to_vec());
            built.push(layer);
        }
        let sizes: Vec<usize> = shapes.iter().map(|s| s.iter().product()).collect();
        let n = shapes.len();
        let mut alias = vec![0; n];
        for (i, layer) in built.iter().enumerate() {
            alias[i + 1] = if layer.is_reshape() { alias[i] } else { i + 1 };
        }
        let mut has_mask = vec![false; n];
        for (i, layer) in built.iter().enumerate() {
            has_mask[i + 1] = match layer.mask_flow() {
                MaskFlow::Drop => false,
                MaskFlow::Keep => has_mask[i],
                MaskFlow::FromInput => true,
            };
        }
        let absorbed = fuse_max_pools(&mut built, &has_mask);
        Ok(Model {
            absorbed,
            has_mask,
            masks: vec![Vec::new(); n],
            layers: built,
            shapes,
            sizes,
            alias,
            acts: vec![Vec::new(); n],
            grads: vec![Vec::new(); n],
            y_batch: Vec::new(),
            w_batch: Vec::new(),
            masked_loss_w: Vec::new(),
            masked_metric_w: Vec::new(),
            idx_batch: Vec::new(),
            key,
            step: 0,
            compiled: None,
        })
    }

    /// From `{"loss": ..., "optimizer": ..., "metrics": [...]}`.
    pub fn compile(&mut self, spec: &Value) -> Result<()> {
        let loss = Loss::from_spec(&spec["loss"])?;
        let optimizer = Optimizer::from_spec(&spec["optimizer"])?;
        let metrics = match spec.get("metrics") {
            Some(Value::Array(ms)) => ms.iter().map(Metric::from_spec).collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let fused_softmax = loss.fuses_with_softmax()
            && self.layers.last().and_then(|l| l.final_activation()) == Some(Activation::Softmax);
        for (i, l) in self.layers.iter_mut().enumerate() {
            l.set_fused_output(fused_softmax && i + 1 == self.shapes.len() - 1);
        }
        self.compiled = Some(Compiled {
            loss,
            optimizer,
            metrics,
            fused_softmax,
        });
        Ok(())
    }

    pub fn shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    pub fn output_size(&self) -> usize {
        *self.sizes.last().expect("non-empty")
    }

    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
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
        let layer = self
            .layers
            .get_mut(index)
            .ok_or_else(|| Error(format!("no layer {index}")))?;
        layer
            .params_mut()
            .iter_mut()
            .for_each(|p| p.frozen = frozen);
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

    pub fn params(&self) -> impl Iterator<Item = &Param> {
        self.layers.iter().flat_map(|l| l.params().iter())
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param> {
        self.layers
            .iter_mut()
            .flat_map(|l| l.params_mut().iter_mut())
            .collect()
    }

    /// The epoch's shuffled sample order.
    pub fn shuffled_order(&self, n: usize, epoch: u64) -> Vec<u32> {
        permutation(self.key.fold(0x0054_ff1e).fold(epoch), n)
    }

    /// The boundary layer `i` writes: the next one, or the one after when layer
    /// `i` took over the pool that follows it.
    fn output_boundary(&self, i: usize) -> usize {
        if self.absorbed.get(i + 1) == Some(&true) {
            i + 2
        } else {
            i + 1
        }
    }

    fn reserve(&mut self, rows: usize) {
        for (i, &size) in self.sizes.iter().enumerate() {
            if self.alias[i] != i || self.absorbed.get(i) == Some(&true) {
                continue;
            }
            if self.acts[i].len() < rows * size {
                self.acts[i].resize(rows * size, 0.0);
            }
            if (i > 0 || self.out_index() == 0) && self.grads[i].len() < rows * size {
                self.grads[i].resize(rows * size, 0.0);
            }
        }
    }

    /// Runs the first layer's value checks on the batch about to go forward.
    fn check_batch(&self, rows: usize, input: Option<&[f32]>) -> Result<()> {
        match self.layers.first() {
            Some(layer) if !layer.is_reshape() => {
                let x = input.unwrap_or(&self.acts[0]);
                layer.check_input(&x[..rows * self.sizes[0]])
            }
            _ => Ok(()),
        }
    }

    /// Runs every layer on `rows` samples: those in `input` if given (read in
    /// place, no copy), else those already in `acts[0]`.
    fn forward(&mut self, rows: usize, training: bool, input: Option<&[f32]>) {
        for i in 0..self.layers.len() {
            if self.layers[i].is_reshape() || self.absorbed[i] {
                continue;
            }
            let out = self.output_boundary(i);
            let (before, after) = self.acts.split_at_mut(i + 1);
            let x = match input {
                Some(input) if self.alias[i] == 0 => &input[..rows * self.sizes[i]],
                _ => &before[self.alias[i]][..rows * self.sizes[i]],
            };
            let y = &mut after[out - i - 1][..rows * self.sizes[out]];
            let (masks_before, masks_after) = self.masks.split_at_mut(i + 1);
            if self.layers[i].mask_flow() == MaskFlow::FromInput {
                let steps = self.shapes[i][0];
                masks_after[0].resize(rows * steps, true);
                self.layers[i].compute_mask(x, rows, &mut masks_after[0][..rows * steps]);
            }
            let layer = &self.layers[i];
            let frozen = layer.params().first().is_some_and(|p| p.frozen);
            let ctx = Ctx {
                training: training && !(frozen && layer.inference_when_frozen()),
                key: self.key.fold(i as u64).fold(0xd0).fold(self.step),
                mask: self.has_mask[i].then(|| &masks_before[i][..rows * self.shapes[i][0]]),
            };
            self.layers[i].forward(x, y, rows, &ctx);
            if self.layers[i].mask_flow() == MaskFlow::Keep && self.has_mask[i] {
                let steps = self.shapes[i][0];
                masks_after[0].clear();
                masks_after[0].extend_from_slice(&masks_before[i][..rows * steps]);
            }
        }
    }

    /// The buffer index of the model's output.
    fn out_index(&self) -> usize {
        self.alias[self.layers.len()]
    }

    /// Backpropagates `grads[last]` through every layer, setting param grads.
    fn backward(&mut self, rows: usize) {
        for i in (0..self.layers.len()).rev() {
            if !self.layers[..=i].iter().any(|l| !l.params().is_empty()) {
                break;
            }
            if self.layers[i].is_reshape() || self.absorbed[i] {
                continue; // a reshape's input and output gradients share one buffer
            }
            let out = self.output_boundary(i);
            let (lo, hi) = self.grads.split_at_mut(i + 1);
            let dy = &mut hi[out - i - 1][..rows * self.sizes[out]];
            // No input gradient where nothing upstream has weights (e.g. after Flatten).
            let needs_dx = self.layers[..i].iter().any(|l| !l.params().is_empty());
            let dx = needs_dx.then(|| &mut lo[self.alias[i]][..rows * self.sizes[i]]);
            let x = &self.acts[self.alias[i]][..rows * self.sizes[i]];
            let y = &self.acts[out][..rows * self.sizes[out]];
            self.layers[i].backward(x, y, dy, dx, rows);
        }
    }

    fn regularization(&self) -> f64 {
        self.params()
            .filter(|p| p.is_trained())
            .filter_map(|p| p.regularizer.map(|r| r.penalty(p.value_slice())))
            .sum()
    }

    /// Loads the samples `idx` into the input, target and weight buffers.
    fn load_batch(&mut self, data: &Dataset, idx: &[u32]) -> bool {
        let rows = idx.len();
        self.reserve(rows);
        data.x.gather(data.x_width, idx, &mut self.acts[0]);
        self.y_batch.resize(rows * data.y_width, 0.0);
        data.gather_y(idx, &mut self.y_batch);
        self.w_batch.resize(rows, 0.0);
        let weighted = data.gather_weights(idx, &mut self.w_batch);
        // Each step of a sequence output is scored with its sample's weight.
        let steps = self.output_steps();
        if weighted && steps > 1 {
            self.w_batch.resize(rows * steps, 0.0);
            for r in (0..rows).rev() {
                let w = self.w_batch[r];
                self.w_batch[r * steps..(r + 1) * steps].fill(w);
            }
        }
        weighted
    }

    /// Values the loss scores together: the output's last axis (classes), as in Keras.
    fn class_width(&self) -> usize {
        self.shapes
            .last()
            .and_then(|s| s.last())
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// Loss terms per sample: the output's positions before its last axis
    /// (time steps of a sequence output); the sample's loss is their mean.
    fn output_steps(&self) -> usize {
        self.output_size() / self.class_width()
    }

    /// The keep-mask of a (steps, classes) output, when the steps carry one
    /// (a sequence after Embedding(mask_zero) or Masking).
    fn output_mask(&self, rows: usize) -> Option<&[bool]> {
        let last = self.layers.len();
        (self.has_mask[last] && self.shapes[last].len() == 2)
            .then(|| &self.masks[last][..rows * self.output_steps()])
    }

    /// As Keras does, masked steps take no part in the loss: each kept step is
    /// weighted total/kept, so the mean runs over kept steps only. Metrics
    /// count kept steps only. Returns whether the batch's output is masked.
    fn weigh_masked_steps(&mut self, rows: usize, weighted: bool) -> bool {
        let mut loss_w = std::mem::take(&mut self.masked_loss_w);
        let mut metric_w = std::mem::take(&mut self.masked_metric_w);
        let masked = match self.output_mask(rows) {
            None => false,
            Some(mask) => {
                let kept = mask.iter().filter(|&&k| k).count();
                let scale = mask.len() as f32 / kept.max(1) as f32;
                loss_w.clear();
                metric_w.clear();
                for (i, &k) in mask.iter().enumerate() {
                    let w = if weighted { self.w_batch[i] } else { 1.0 };
                    loss_w.push(if k { w * scale } else { 0.0 });
                    metric_w.push(if k { 1.0 } else { 0.0 });
                }
                true
            }
        };
        self.masked_loss_w = loss_w;
        self.masked_metric_w = metric_w;
        masked
    }

    /// The batch's mean loss, and its gradient into the output gradient buffer if asked.
    fn batch_loss(&mut self, data: &Dataset, rows: usize, weighted: bool, grad: bool) -> f64 {
        let (width, steps) = (self.class_width(), self.output_steps());
        let terms = rows * steps;
        let masked = self.weigh_masked_steps(rows, weighted);
        let last = self.out_index();
        let compiled = self.compiled.as_ref().expect("checked");
        let w = if masked {
            Some(&self.masked_loss_w[..terms])
        } else {
            weighted.then(|| &self.w_batch[..terms])
        };
        let fused = grad && compiled.fused_softmax;
        let grads = grad.then_some(&mut self.grads[last][..terms * width]);
        compiled.loss.evaluate(
            &self.y_batch,
            data.y_width / steps,
            &self.acts[last][..terms * width],
            width,
            w,
            terms as f32,
            grads,
            fused,
        ) / terms as f64
    }

    /// Adds the batch's loss and metrics (computed from the current outputs) to `totals`.
    fn score_batch(&self, data: &Dataset, rows: usize, loss_value: f64, totals: &mut Totals) {
        let compiled = self.compiled.as_ref().expect("compiled");
        let out = &self.acts[self.out_index()][..rows * self.output_size()];
        let (width, steps) = (self.class_width(), self.output_steps());
        totals.loss_sum += loss_value * rows as f64;
        totals.samples += rows as f64;
        totals.batches += 1;
        totals.metrics.resize(compiled.metrics.len(), (0.0, 0.0));
        // Keras weights only the loss by sample_weight; compiled metrics stay unweighted
        // (but skip masked steps).
        let w = self
            .output_mask(rows)
            .map(|_| &self.masked_metric_w[..rows * steps]);
        for (m, acc) in compiled.metrics.iter().zip(totals.metrics.iter_mut()) {
            m.update(&self.y_batch, data.y_width / steps, out, width, w, acc);
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
        let mut idx = std::mem::take(&mut self.idx_batch);
        for batch in order.chunks(batch_size.max(1)) {
            idx.clear();
            idx.extend_from_slice(batch);
            let rows = idx.len();
            let mut clock = phases::Clock::start();
            let weighted = self.load_batch(data, &idx);
            self.check_batch(rows, None)?;
            clock.lap(phases::GATHER);
            self.forward(rows, true, None);
            clock.lap(phases::FORWARD);
            let data_loss = self.batch_loss(data, rows, weighted, true);
            clock.lap(phases::LOSS);
            self.backward(rows);
            clock.lap(phases::BACKWARD);
            let reg = self.regularization();
            let Model {
                layers, compiled, ..
            } = self;
            let mut params: Vec<&mut Param> = layers
                .iter_mut()
                .flat_map(|l| l.params_mut().iter_mut())
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
            self.score_batch(data, rows, data_loss + reg, totals);
            clock.lap(phases::METRICS);
        }
        self.idx_batch = idx;
        Ok(())
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
        let reg = self.regularization();
        let order: Vec<u32> = (start as u32..end.min(data.n) as u32).collect();
        for idx in order.chunks(batch_size.max(1)) {
            let rows = idx.len();
            let weighted = self.load_batch(data, idx);
            self.check_batch(rows, None)?;
            self.forward(rows, false, None);
            let loss = self.batch_loss(data, rows, weighted, false);
            self.score_batch(data, rows, loss + reg, totals);
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
        let width = self.sizes[0];
        if width == 0 || !x.len().is_multiple_of(width) {
            crate::bail!(
                "x has {} values, not a whole number of samples of {width} values",
                x.len()
            );
        }
        let n = x.len() / width;
        let end = end.min(n);
        let out_size = self.output_size();
        if out.len() < (end.saturating_sub(start)) * out_size {
            crate::bail!("predict: output buffer too small");
        }
        let order: Vec<u32> = (start as u32..end as u32).collect();
        // NaN/inf in x: a first layer that can flags them among its pre-activations
        // (no extra pass over x); the batch is scanned to report where only then.
        // uint8 pixels are finite: neither is needed.
        let watcher = self
            .layers
            .iter()
            .position(|l| !l.is_reshape())
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
            self.reserve(rows);
            // float32 rows in order are read where they are; other dtypes are converted.
            let direct = match x {
                Features::F32(v) => Some(&v[idx[0] as usize * width..][..rows * width]),
                _ => {
                    x.gather(width, idx, &mut self.acts[0]);
                    None
                }
            };
            self.check_batch(rows, direct)?;
            self.forward(rows, false, direct);
            if watcher.is_some_and(|i| self.layers[i].saw_non_finite()) {
                if let Some(i) = scan() {
                    return Err(non_finite(i));
                }
            }
            let result = match direct {
                Some(input) if self.out_index() == 0 => &input[..rows * out_size],
                _ => &self.acts[self.out_index()][..rows * out_size],
            };
            out[offset..offset + rows * out_size].copy_from_slice(result);
            offset += rows * out_size;
        }
        Ok(())
    }

    fn check_data(&self, data: &Dataset) -> Result<()> {
        let Some(compiled) = &self.compiled else {
            crate::bail!(
                "the model must be compiled before training or evaluating: call compile()"
            );
        };
        if data.x_width != self.sizes[0] {
            crate::bail!(
                "expected samples of {} values (shape {:?}), got {}",
                self.sizes[0],
                self.shapes[0],
                data.x_width
            );
        }
        let want_y = if compiled.loss.is_sparse() {
            self.output_steps()
        } else {
            self.output_size()
        };
        if data.y_width != want_y {
            crate::bail!(
                "expected targets of {want_y} values per sample, got {}",
                data.y_width
            );
        }
        Ok(())
    }
}

/// Lets each layer take over a max pool that follows it where it can (see
/// `Layer::absorb_max_pool`); returns which layers were taken over. Not across a
/// time-step mask, which the pair would have to carry.
fn fuse_max_pools(layers: &mut [Box<dyn Layer>], has_mask: &[bool]) -> Vec<bool> {
    let mut absorbed = vec![false; layers.len()];
    for i in 1..layers.len() {
        if absorbed[i - 1] || has_mask[i - 1] || has_mask[i] {
            continue;
        }
        let (before, after) = layers.split_at_mut(i);
        if let Some(window) = after[0].tiling_max_pool() {
            absorbed[i] = before[i - 1].absorb_max_pool(window);
        }
    }
    absorbed
}
