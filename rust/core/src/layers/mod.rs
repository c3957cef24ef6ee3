//! Layers. Each file keeps one layer's shape rule, forward and backward together.
//!
//! Activations travel between layers as row-major f32 buffers of `rows`
//! samples, each sample laid out in its per-sample shape.

mod activation;
mod affine;
mod batch_norm;
mod channels_first;
mod conv2d;
mod conv_pool;
mod conv_transpose;
mod dense;
mod depthwise;
mod dot;
mod dropout;
mod embedding;
mod frame;
mod gaussian_noise;
mod global_pool;
mod im2col;
mod input_slice;
mod layer_norm;
mod masking;
mod merge;
mod op;
mod permute;
mod pool2d;
mod random;
mod recurrent;
mod repeat_vector;
mod rescaling;
mod reshape;
mod separable;
mod source;
mod spatial_dropout;
mod time_distributed;
mod upsampling;
mod window;

pub use activation::ActivationLayer;
pub use batch_norm::BatchNorm;
pub use channels_first::ChannelsFirst;
pub use conv2d::Conv2D;
pub use conv_transpose::Conv2DTranspose;
pub use dense::Dense;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use frame::Frame;
pub use gaussian_noise::GaussianNoise;
pub use global_pool::GlobalPool;
pub use input_slice::InputSlice;
pub use layer_norm::LayerNorm;
pub use masking::Masking;
pub use merge::{Concatenate, Elementwise, MergeOp};
pub use op::OpLayer;
pub use permute::Permute;
pub use pool2d::{Pool2D, PoolKind};
pub use random::Random;
pub use recurrent::{Bidirectional, CellKind, Recurrent};
pub use repeat_vector::RepeatVector;
pub use rescaling::Rescaling;
pub use reshape::Reshape;
pub use separable::SeparableConv2D;
pub use source::{Constant, Targets, Variable};
pub use spatial_dropout::SpatialDropout;
pub use time_distributed::TimeDistributed;
pub use upsampling::UpSampling2D;

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::init::InitSpec;
use crate::regularizer::Regularizer;
use crate::rng::Key;
use ndarray::ArrayD;
use serde_json::Value;

/// The engine's tensor: an f32 n-dimensional array.
pub type Tensor = ArrayD<f32>;

/// A weight with its gradient and penalty.
pub struct Param {
    pub name: &'static str,
    pub value: Tensor,
    pub grad: Tensor,
    pub regularizer: Option<Regularizer>,
    /// False for state the layer updates itself (BatchNormalization's moving
    /// statistics): the optimizer and the regularizers leave it alone.
    pub trainable: bool,
    /// Its layer is frozen (`layer.trainable = False` in Keras): not trained for now.
    pub frozen: bool,
}

impl Param {
    pub fn new(
        name: &'static str,
        shape: &[usize],
        init: &InitSpec,
        key: Key,
        regularizer: Option<Regularizer>,
    ) -> Result<Self> {
        crate::sizing::weight(name, shape)?;
        let data = init.sample(shape, key)?;
        Ok(Param {
            name,
            value: Tensor::from_shape_vec(shape.to_vec(), data)
                .expect("initializer size matches shape"),
            grad: Tensor::zeros(shape.to_vec()),
            regularizer,
            trainable: true,
            frozen: false,
        })
    }

    /// A trainable weight holding `value`, its gradient zero, without regularizer.
    pub fn from_value(name: &'static str, value: Tensor) -> Self {
        let grad = Tensor::zeros(value.raw_dim());
        Param {
            name,
            value,
            grad,
            regularizer: None,
            trainable: true,
            frozen: false,
        }
    }

    /// Whether the optimizer and the regularizers act on this weight.
    pub fn is_trained(&self) -> bool {
        self.trainable && !self.frozen
    }

    /// A weight the optimizer never updates.
    pub fn non_trainable(mut self) -> Self {
        self.trainable = false;
        self
    }

    /// Gives value and gradient a new shape of the same size (a 2-D kernel
    /// reused with height 1 as a 1-D one).
    pub fn reshaped(mut self, shape: &[usize]) -> Self {
        let reshape = |t: Tensor| {
            let data = t.into_raw_vec_and_offset().0;
            Tensor::from_shape_vec(shape.to_vec(), data).expect("same number of elements")
        };
        self.value = reshape(self.value);
        self.grad = reshape(self.grad);
        self
    }

    pub fn value_slice_mut(&mut self) -> &mut [f32] {
        self.value.as_slice_mut().expect("params are contiguous")
    }

    pub fn value_slice(&self) -> &[f32] {
        self.value.as_slice().expect("params are contiguous")
    }

    pub fn grad_slice_mut(&mut self) -> &mut [f32] {
        self.grad.as_slice_mut().expect("grads are contiguous")
    }
}

/// What a forward pass needs to know besides its input.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub training: bool,
    /// Random stream for this layer at this step (dropout masks).
    pub key: Key,
    /// Which time steps of the input are real (rows × steps, true = keep),
    /// when a layer upstream (Embedding with mask_zero, Masking) made a mask.
    pub mask: Option<&'a [bool]>,
}

#[cfg(test)]
impl Ctx<'static> {
    /// A pass with a fixed key and no mask, for layer tests.
    pub(crate) fn for_tests(training: bool) -> Self {
        Ctx {
            training,
            key: Key::new(0),
            mask: None,
        }
    }
}

/// How a layer's output mask follows from its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskFlow {
    /// No mask after this layer.
    Drop,
    /// The output keeps the input's time axis and its mask.
    Keep,
    /// The layer makes a new mask from its input values (`compute_mask`).
    FromInput,
    /// Several inputs on one time axis (elementwise merges): a step is kept where
    /// every input that has a mask keeps it, as Keras's merge layers combine masks.
    Combine,
    /// Several inputs joined along the time axis (Concatenate on axis 1): their
    /// masks are joined the same way (an input without one keeps all its steps).
    JoinSteps,
}

pub trait Layer: Send + Sync {
    /// Per-sample output shape, fixed when the layer is built.
    fn output_shape(&self) -> &[usize];

    /// Whether the output has a batch axis; false for a weight or a constant
    /// of a traced graph, or an op that reduced over the batch.
    fn output_batched(&self) -> bool {
        true
    }

    /// For a node without inputs (a `Variable` or a `Constant`): its value, which
    /// the model reads in place instead of running the node.
    fn source(&self) -> Option<&[f32]> {
        None
    }

    /// For a `Targets` node: the output whose targets it holds.
    fn target_head(&self) -> Option<usize> {
        None
    }

    fn params(&self) -> &[Param] {
        &[]
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut []
    }

    /// y ← layer(x) for `rows` samples.
    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, ctx: &Ctx<'_>);

    /// Given the forward's x and y and the output gradient `dy` (which may be
    /// overwritten), set each param's `grad` and, if asked, the input gradient `dx`.
    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    );

    /// y ← layer(xs) for a layer with several inputs (the merge layers); a
    /// one-input layer is handed its only input.
    fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize, ctx: &Ctx<'_>) {
        self.forward(xs[0], y, rows, ctx);
    }

    /// `backward` for several inputs: sets each asked-for `dxs[k]` (overwriting it).
    fn backward_many(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &mut [f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let dx = dxs[0].take();
        self.backward(xs[0], y, dy, dx, rows);
    }

    /// Whether the layer only reinterprets the shape (Flatten, Reshape): the model
    /// then shares one buffer between its input and output and never calls it.
    fn is_reshape(&self) -> bool {
        false
    }

    /// The activation this layer ends with, so the loss may fuse with it.
    fn final_activation(&self) -> Option<Activation> {
        None
    }

    /// Skip the final activation's derivative in backward: the loss already
    /// gave the gradient with respect to the pre-activation (softmax + cross-entropy).
    fn set_fused_output(&mut self, _fused: bool) {}

    fn mask_flow(&self) -> MaskFlow {
        MaskFlow::Drop
    }

    /// For `MaskFlow::FromInput`: the keep-mask (rows × steps) of input `x`.
    fn compute_mask(&self, _x: &[f32], _rows: usize, _mask: &mut [bool]) {}

    /// Checks values that could not be checked when building (Embedding's ids).
    /// The model runs it on the batch before the first layer's forward.
    fn check_input(&self, _x: &[f32]) -> Result<()> {
        Ok(())
    }

    /// Whether a frozen layer also runs in inference mode in training
    /// (Keras's rule for BatchNormalization: frozen moving statistics).
    fn inference_when_frozen(&self) -> bool {
        false
    }

    /// Forget the state carried between batches (stateful recurrent layers).
    fn reset_states(&mut self) {}

    /// For a first layer, in predict: flag NaN or infinity among its
    /// pre-activations, which every non-finite input value reaches (a NaN or an
    /// infinity times any weight is NaN or infinite, and so is any sum with it),
    /// instead of a separate pass over the input. False when the layer cannot;
    /// the model then scans the input itself.
    fn watch_non_finite(&mut self, _on: bool) -> bool {
        false
    }

    /// With `watch_non_finite` on: whether the last forward pass met a NaN or an
    /// infinity (which may also come from a finite input that overflowed).
    fn saw_non_finite(&self) -> bool {
        false
    }

    /// For a max pool whose windows tile its input: the window, so that the
    /// layer before may take the pooling over (`absorb_max_pool`).
    fn tiling_max_pool(&self) -> Option<PoolWindow> {
        None
    }

    /// Take over the max pool that follows: from now on `forward` writes, and
    /// `backward` receives, the pooled values (the pool layer is skipped). False
    /// when this layer cannot, and then nothing changed.
    fn absorb_max_pool(&mut self, _window: PoolWindow) -> bool {
        false
    }
}

/// A max pool's window when its windows tile the input: the stride equals the
/// window, there is no padding and no dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolWindow {
    pub rows: usize,
    pub cols: usize,
}

/// Read an optional field of a layer config.
pub(crate) fn field<'a>(config: &'a Value, key: &str) -> &'a Value {
    config.get(key).unwrap_or(&Value::Null)
}

/// `config[key]` as a finite f32, or `default` when absent or null.
pub(crate) fn f32_field(config: &Value, layer: &str, key: &str, default: f32) -> Result<f32> {
    match field(config, key) {
        Value::Null => Ok(default),
        v => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(|f| f as f32)
            .ok_or_else(|| Error(format!("{layer}: '{key}' must be a finite number, got {v}"))),
    }
}

/// (At most `MAX_DIM`: products of two such sizes, times a few gates, cannot
/// overflow, and no layer of a model that fits in memory needs more.)
pub(crate) fn usize_field(config: &Value, layer: &str, key: &str) -> Result<usize> {
    field(config, key)
        .as_u64()
        .filter(|&v| v <= MAX_DIM as u64)
        .map(|v| v as usize)
        .ok_or_else(|| {
            Error(format!(
                "{layer}: '{key}' must be an integer from 0 to {MAX_DIM}, got {}",
                field(config, key)
            ))
        })
}

/// The largest size a layer's integer argument (units, filters, ...) may have.
pub const MAX_DIM: usize = 1 << 31;

/// The initializer `config[key]`, or `default` (a Keras name) when absent.
pub(crate) fn init_field(config: &Value, key: &str, default: &str) -> Result<InitSpec> {
    match field(config, key) {
        Value::Null => InitSpec::from_spec(&Value::String(default.into())),
        v => InitSpec::from_spec(v),
    }
}

/// A kernel of `kernel_shape` and, if `use_bias`, a bias of `units`, with the
/// initializers and regularizers of `config` (Keras's defaults otherwise).
pub(crate) fn kernel_and_bias(
    config: &Value,
    kernel_shape: &[usize],
    units: usize,
    use_bias: bool,
    key: Key,
) -> Result<Vec<Param>> {
    let init = |k: &str, default: &str| init_field(config, k, default);
    let mut params = vec![Param::new(
        "kernel",
        kernel_shape,
        &init("kernel_initializer", "glorot_uniform")?,
        key.fold(0),
        Regularizer::from_spec(field(config, "kernel_regularizer"))?,
    )?];
    if use_bias {
        params.push(Param::new(
            "bias",
            &[units],
            &init("bias_initializer", "zeros")?,
            key.fold(1),
            Regularizer::from_spec(field(config, "bias_regularizer"))?,
        )?);
    }
    Ok(params)
}

/// The per-sample index of a Keras `axis` (counted with the batch axis;
/// negative from the end); the batch axis itself is refused.
pub(crate) fn sample_axis(name: &str, axis: &Value, input_shape: &[usize]) -> Result<usize> {
    let rank = input_shape.len() as i64 + 1;
    let a = match axis {
        Value::Null => -1,
        v => v
            .as_i64()
            .ok_or_else(|| Error(format!("{name}: 'axis' must be an integer, got {v}")))?,
    };
    let a = if a < 0 { a + rank } else { a };
    if a < 1 || a >= rank {
        return Err(Error(format!(
            "{name}: axis {axis} is out of range for inputs of rank {rank} (per-sample shape \
             {input_shape:?}); it must name a non-batch axis"
        )));
    }
    Ok(a as usize - 1)
}

/// The classes of nodes that read no value (a traced layer's weights and constants).
pub fn is_source_class(class: &str) -> bool {
    matches!(class, "Variable" | "Constant" | "Targets" | "Random")
}

/// Build the layer of one graph node for inputs shaped as `inputs`: an op node
/// takes any inputs, a source node none, and every other layer batched ones
/// (per-sample shapes, see `build_node`).
pub fn build_graph_node(
    spec: &Value,
    inputs: &[crate::ops::Operand],
    key: Key,
) -> Result<Box<dyn Layer>> {
    let class = spec.get("class_name").and_then(Value::as_str).unwrap_or("");
    let config = field(spec, "config");
    let name = config.get("name").and_then(Value::as_str).unwrap_or(class);
    match class {
        "Op" => return Ok(Box::new(OpLayer::build(name, config, inputs)?)),
        "Variable" => return Ok(Box::new(Variable::build(name, config, key)?)),
        "Constant" => return Ok(Box::new(Constant::build(name, config)?)),
        "Targets" => return Ok(Box::new(Targets::build(name, config)?)),
        "Random" => return Ok(Box::new(Random::build(name, config)?)),
        _ => {}
    }
    if let Some(fixed) = inputs.iter().find(|o| !o.batched) {
        return Err(Error(format!(
            "{class} '{name}': takes tensors with a batch axis, got one of shape {} without \
             (a weight, a constant, or a reduction over the batch axis)",
            fixed.describe()
        )));
    }
    let shapes: Vec<&[usize]> = inputs.iter().map(|o| &o.shape[..]).collect();
    build_node(spec, &shapes, key)
}

/// Build the layer of one graph node from its spec for inputs of per-sample
/// `input_shapes`: a merge layer takes them all, any other layer exactly one.
pub fn build_node(spec: &Value, input_shapes: &[&[usize]], key: Key) -> Result<Box<dyn Layer>> {
    let class = spec
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error(format!("layer spec needs a 'class_name', got {spec}")))?;
    let config = field(spec, "config");
    let name = config.get("name").and_then(Value::as_str).unwrap_or(class);
    if let Some(layer) = merge::build(class, name, config, input_shapes)? {
        return Ok(layer);
    }
    let cell = match class {
        "SimpleRNN" => Some(CellKind::Simple),
        "LSTM" => Some(CellKind::Lstm),
        "GRU" => Some(CellKind::Gru),
        _ => None,
    };
    if let (Some(kind), true) = (cell, input_shapes.len() > 1) {
        let layer = Recurrent::build_with_initial_state(name, config, input_shapes, key, kind)?;
        return Ok(Box::new(layer));
    }
    match input_shapes {
        [one] => build(spec, one, key),
        _ => Err(Error(format!(
            "{class} '{name}': takes one input, got {} (only merge layers such as Add or \
             Concatenate take several)",
            input_shapes.len()
        ))),
    }
}

/// Build one layer from `{"class_name": ..., "config": {...}}` for inputs of
/// per-sample shape `input_shape`. `key` seeds its initial weights. Layers
/// with `data_format: "channels_first"` are built channels-last and wrapped.
pub fn build(spec: &Value, input_shape: &[usize], key: Key) -> Result<Box<dyn Layer>> {
    let class = spec
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error(format!("layer spec needs a 'class_name', got {spec}")))?;
    let config = field(spec, "config");
    let name = config.get("name").and_then(Value::as_str).unwrap_or(class);
    match field(config, "data_format").as_str() {
        None | Some("channels_last") => build_channels_last(class, name, config, input_shape, key),
        Some("channels_first") => {
            if input_shape.len() < 2 {
                return Err(Error(format!(
                    "{name}: channels_first inputs need a channel axis and at least one \
                     spatial axis, got per-sample shape {input_shape:?}"
                )));
            }
            // The inner layer's errors speak of the transposed shape: say so.
            let wrapped = ChannelsFirst::wrap(input_shape, |last| {
                build_channels_last(class, name, config, last, key)
            })
            .map_err(|e| {
                Error(format!(
                    "{} (data_format=\"channels_first\": the per-sample input {input_shape:?} \
                     was read as channels last)",
                    e.0
                ))
            })?;
            Ok(Box::new(wrapped))
        }
        Some(other) => Err(Error(format!(
            "{name}: 'data_format' must be \"channels_last\" or \"channels_first\", got \"{other}\""
        ))),
    }
}

fn build_channels_last(
    class: &str,
    name: &str,
    config: &Value,
    input_shape: &[usize],
    key: Key,
) -> Result<Box<dyn Layer>> {
    use PoolKind::{Average, Max};
    let layer: Box<dyn Layer> = match class {
        "Dense" => Box::new(Dense::build(name, config, input_shape, key)?),
        "Flatten" => Box::new(Reshape::flatten(input_shape)),
        "Reshape" => Box::new(Reshape::build(name, config, input_shape)?),
        "RepeatVector" => Box::new(RepeatVector::build(name, config, input_shape)?),
        "Permute" => Box::new(Permute::build(name, config, input_shape)?),
        "Activation" => Box::new(ActivationLayer::build(config, input_shape)?),
        "Rescaling" => Box::new(Rescaling::build(name, config, input_shape)?),
        "InputSlice" => Box::new(InputSlice::build(name, config, input_shape)?),
        "Dropout" => Box::new(Dropout::build(name, config, input_shape)?),
        "GaussianNoise" => Box::new(GaussianNoise::build(name, config, input_shape)?),
        "Conv2D" => Box::new(Conv2D::build(name, config, input_shape, key)?),
        "Conv1D" => Box::new(Conv2D::build_1d(name, config, input_shape, key)?),
        "DepthwiseConv2D" => Box::new(Conv2D::build_depthwise(name, config, input_shape, key)?),
        "SeparableConv2D" => Box::new(SeparableConv2D::build(name, config, input_shape, key)?),
        "Conv2DTranspose" => Box::new(Conv2DTranspose::build(name, config, input_shape, key)?),
        "Conv1DTranspose" => Box::new(Conv2DTranspose::build_1d(name, config, input_shape, key)?),
        "MaxPooling2D" => Box::new(Pool2D::build(name, config, input_shape, Max)?),
        "AveragePooling2D" => Box::new(Pool2D::build(name, config, input_shape, Average)?),
        "MaxPooling1D" => Box::new(Pool2D::build_1d(name, config, input_shape, Max)?),
        "AveragePooling1D" => Box::new(Pool2D::build_1d(name, config, input_shape, Average)?),
        "GlobalMaxPooling1D" => Box::new(GlobalPool::build(name, config, input_shape, Max, 1)?),
        "GlobalAveragePooling1D" => {
            Box::new(GlobalPool::build(name, config, input_shape, Average, 1)?)
        }
        "SimpleRNN" => Box::new(Recurrent::build(
            name,
            config,
            input_shape,
            key,
            CellKind::Simple,
        )?),
        "LSTM" => Box::new(Recurrent::build(
            name,
            config,
            input_shape,
            key,
            CellKind::Lstm,
        )?),
        "GRU" => Box::new(Recurrent::build(
            name,
            config,
            input_shape,
            key,
            CellKind::Gru,
        )?),
        "Bidirectional" => Box::new(Bidirectional::build(name, config, input_shape, key)?),
        "TimeDistributed" => Box::new(TimeDistributed::build(name, config, input_shape, key)?),
        "Embedding" => Box::new(Embedding::build(name, config, input_shape, key)?),
        "Masking" => Box::new(Masking::build(name, config, input_shape)?),
        "GlobalMaxPooling2D" => Box::new(GlobalPool::build(name, config, input_shape, Max, 2)?),
        "GlobalAveragePooling2D" => {
            Box::new(GlobalPool::build(name, config, input_shape, Average, 2)?)
        }
        "BatchNormalization" => Box::new(BatchNorm::build(name, config, input_shape, key)?),
        "LayerNormalization" => Box::new(LayerNorm::build(name, config, input_shape, key)?),
        "ZeroPadding2D" => Box::new(Frame::build(name, config, input_shape, true)?),
        "Cropping2D" => Box::new(Frame::build(name, config, input_shape, false)?),
        "UpSampling2D" => Box::new(UpSampling2D::build(name, config, input_shape)?),
        "SpatialDropout1D" => Box::new(SpatialDropout::build(name, config, input_shape, 1)?),
        "SpatialDropout2D" => Box::new(SpatialDropout::build(name, config, input_shape, 2)?),
        other => return Err(Error(format!("unknown layer class '{other}'"))),
    };
    Ok(layer)
}
