//! SeparableConv2D: a DepthwiseConv2D (no bias, linear) followed by a 1×1
//! Conv2D with the bias and activation. Weights in Keras's order:
//! depthwise_kernel (kh, kw, in, depth_multiplier),
//! pointwise_kernel (1, 1, in·depth_multiplier, filters), bias (filters).
//!
//! The two inner convolutions do the work; this layer owns the weights (the
//! model needs them in one slice) and lends them to the inner layers for each pass.

use super::conv2d::Conv2D;
use super::{field, Ctx, Layer, Param, Tensor};
use crate::activation::Activation;
use crate::error::Result;
use crate::rng::Key;
use serde_json::{json, Value};

pub struct SeparableConv2D {
    depthwise: Conv2D,
    pointwise: Conv2D,
    /// [depthwise_kernel, pointwise_kernel, bias?]; the inner layers hold
    /// placeholders except while they run.
    params: Vec<Param>,
    mid: Vec<f32>,
    mid_grad: Vec<f32>,
}

fn placeholder() -> Param {
    Param {
        name: "",
        value: Tensor::zeros(vec![0]),
        grad: Tensor::zeros(vec![0]),
        regularizer: None,
        trainable: true,
        frozen: false,
    }
}

impl SeparableConv2D {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let get = |k: &str| field(config, k).clone();
        let depthwise_config = json!({
            "kernel_size": get("kernel_size"),
            "strides": get("strides"),
            "padding": get("padding"),
            "dilation_rate": get("dilation_rate"),
            "depth_multiplier": get("depth_multiplier"),
            "use_bias": false,
            "kernel_initializer": get("depthwise_initializer"),
            "kernel_regularizer": get("depthwise_regularizer"),
        });
        let mut depthwise =
            Conv2D::build_depthwise(name, &depthwise_config, input_shape, key.fold(0))?;
        let pointwise_config = json!({
            "filters": get("filters"),
            "kernel_size": [1, 1],
            "strides": [1, 1],
            "dilation_rate": [1, 1],
            "activation": get("activation"),
            "use_bias": get("use_bias"),
            "kernel_initializer": get("pointwise_initializer"),
            "kernel_regularizer": get("pointwise_regularizer"),
            "bias_initializer": get("bias_initializer"),
            "bias_regularizer": get("bias_regularizer"),
        });
        let mut pointwise = Conv2D::build(
            name,
            &pointwise_config,
            depthwise.output_shape(),
            key.fold(1),
        )?;
        let mut params = Vec::new();
        for (inner, names) in [
            (&mut depthwise, &["depthwise_kernel"][..]),
            (&mut pointwise, &["pointwise_kernel", "bias"][..]),
        ] {
            for (p, &n) in inner.params_mut().iter_mut().zip(names) {
                let mut own = std::mem::replace(p, placeholder());
                own.name = n;
                params.push(own);
            }
        }
        Ok(SeparableConv2D {
            depthwise,
            pointwise,
            params,
            mid: Vec::new(),
            mid_grad: Vec::new(),
        })
    }

    /// Swaps the weights between this layer and the inner ones (lend, then return).
    fn swap_weights(&mut self) {
        let (dw, pw) = self.params.split_at_mut(1);
        std::mem::swap(&mut dw[0], &mut self.depthwise.params_mut()[0]);
        for (own, inner) in pw.iter_mut().zip(self.pointwise.params_mut()) {
            std::mem::swap(own, inner);
        }
    }
}

impl Layer for SeparableConv2D {
    fn output_shape(&self) -> &[usize] {
        self.pointwise.output_shape()
    }

    fn params(&self) -> &[Param] {
        &self.params
    }

    fn params_mut(&mut self) -> &mut [Param] {
        &mut self.params
    }

    fn final_activation(&self) -> Option<Activation> {
        self.pointwise.final_activation()
    }

    fn set_fused_output(&mut self, fused: bool) {
        self.pointwise.set_fused_output(fused);
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, ctx: &Ctx) {
        let mid_size: usize = self.depthwise.output_shape().iter().product();
        self.mid.resize(rows * mid_size, 0.0);
        self.swap_weights();
        self.depthwise.forward(x, &mut self.mid, rows, ctx);
        self.pointwise.forward(&self.mid, y, rows, ctx);
        self.swap_weights();
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        self.mid_grad.resize(self.mid.len(), 0.0);
        self.swap_weights();
        self.pointwise
            .backward(&self.mid, y, dy, Some(&mut self.mid_grad), rows);
        self.depthwise
            .backward(x, &self.mid, &mut self.mid_grad, dx, rows);
        self.swap_weights();
    }
}
