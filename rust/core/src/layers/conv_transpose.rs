//! Conv2DTranspose (channels last): the input gradient of a Conv2D, used as a
//! forward pass. Each input pixel times the kernel gives a patch row
//! (x · Kᵀ), and the patch rows are summed onto the output image (col2im).
//! Backward is the convolution itself: im2col of the output gradient.

use super::affine::AffineOutput;
use super::im2col::Patches;
use super::window::{image_shape, padding, pair, Axis, Padding};
use super::{field, usize_field, Ctx, Layer, Param};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::matmul::Gemm;
use crate::rng::Key;
use serde_json::Value;

pub struct Conv2DTranspose {
    /// The convolution that maps this layer's output shape back to its input shape.
    geometry: Patches,
    in_channels: usize,
    filters: usize,
    output_shape: Vec<usize>,
    /// [kernel (kh, kw, filters, in_channels), bias (filters)?]
    params: Vec<Param>,
    out: AffineOutput,
    cols: Vec<f32>,
}

/// Keras's output length: input·stride, plus what a "valid" window sticks out.
fn output_length(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: Padding,
) -> usize {
    let span = (kernel - 1) * dilation + 1;
    match pad {
        Padding::Same => input * stride,
        _ => input * stride + span.saturating_sub(stride),
    }
}

impl Conv2DTranspose {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let filters = usize_field(config, name, "filters")?;
        if filters == 0 {
            return Err(Error(format!(
                "{name}: 'filters' must be a positive integer, got 0"
            )));
        }
        let (h, w, in_channels) = image_shape(name, input_shape)?;
        let (kh, kw) = pair(config, name, "kernel_size")?;
        let (sh, sw) = pair(config, name, "strides")?;
        let (dh, dw) = pair(config, name, "dilation_rate")?;
        let pad = padding(config, name, false)?;
        let (oh, ow) = (
            output_length(h, kh, sh, dh, pad),
            output_length(w, kw, sw, dw, pad),
        );
        let rows = Axis::new(name, oh, kh, sh, dh, pad)?;
        let cols = Axis::new(name, ow, kw, sw, dw, pad)?;
        debug_assert_eq!((rows.output, cols.output), (h, w));
        let activation = Activation::from_spec(field(config, "activation"))?;
        let use_bias = field(config, "use_bias").as_bool().unwrap_or(true);
        let params = super::kernel_and_bias(
            config,
            &[kh, kw, filters, in_channels],
            filters,
            use_bias,
            key,
        )?;
        Ok(Conv2DTranspose {
            geometry: Patches {
                rows,
                cols,
                channels: filters,
            },
            in_channels,
            filters,
            output_shape: vec![oh, ow, filters],
            params,
            out: AffineOutput::new(activation, use_bias),
            cols: Vec::new(),
        })
    }
}

impl Conv2DTranspose {
    /// Conv1DTranspose on (steps, channels) inputs: the 2-D transpose of a
    /// (1, steps, channels) image with a (1, k) kernel, whose kernel Keras stores as
    /// (k, filters, channels), the same values in the same order.
    pub fn build_1d(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let [steps, channels] = input_shape[..] else {
            return Err(Error(format!(
                "{name}: expects inputs of shape (batch, steps, channels), got per-sample \
                 shape {input_shape:?}"
            )));
        };
        let one = |key: &str| -> Result<Value> {
            let v = field(config, key);
            let n = match v {
                Value::Array(a) if a.len() == 1 => a[0].clone(),
                Value::Number(_) => v.clone(),
                Value::Null => Value::from(1),
                _ => {
                    return Err(Error(format!(
                        "{name}: '{key}' must be one integer, got {v}"
                    )))
                }
            };
            Ok(Value::Array(vec![Value::from(1), n]))
        };
        let mut as_2d = config.clone();
        for key in ["kernel_size", "strides", "dilation_rate"] {
            as_2d[key] = one(key)?;
        }
        let mut layer = Self::build(name, &as_2d, &[1, steps, channels], key)?;
        layer.output_shape.remove(0);
        let params = std::mem::take(&mut layer.params);
        layer.params = params
            .into_iter()
            .map(|p| {
                if p.name == "kernel" {
                    let shape = p.value.shape()[1..].to_vec();
                    p.reshaped(&shape)
                } else {
                    p
                }
            })
            .collect();
        Ok(layer)
    }
}

impl Layer for Conv2DTranspose {
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

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, _ctx: &Ctx) {
        let (k, m) = (self.geometry.width(), rows * self.geometry.positions());
        let mut cols = std::mem::take(&mut self.cols);
        cols.resize(m * k, 0.0);
        // cols = x · Kᵀ with the kernel viewed as (kh·kw·filters × in_channels).
        Gemm::new(m, self.in_channels, k).trans_b().run(
            x,
            self.params[0].value_slice(),
            &mut cols,
            false,
        );
        let bias = self.out.use_bias.then(|| self.params[1].value_slice());
        let geometry = self.geometry;
        self.out
            .forward_with(self.filters, bias, y, |z| geometry.col2im_batch(&cols, z));
        self.cols = cols;
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        let (k, m, c) = (
            self.geometry.width(),
            rows * self.geometry.positions(),
            self.in_channels,
        );
        let bias_grad = self.params.get_mut(1).map(|b| b.grad_slice_mut());
        self.out.backward(y, dy, self.filters, bias_grad);
        // d cols = im2col(dz): the adjoint of the scatter.
        let mut cols = std::mem::take(&mut self.cols);
        cols.resize(m * k, 0.0);
        self.geometry.im2col_batch(dy, &mut cols);
        // dK = d colsᵀ · x
        Gemm::new(k, m, c)
            .trans_a()
            .run(&cols, x, self.params[0].grad_slice_mut(), false);
        if let Some(dx) = dx {
            // dx = d cols · K
            Gemm::new(m, k, c).run(&cols, self.params[0].value_slice(), dx, false);
        }
        self.cols = cols;
    }
}
