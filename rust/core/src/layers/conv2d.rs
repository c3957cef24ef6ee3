//! Conv2D, Conv1D and DepthwiseConv2D (channels last) as im2col + GEMM: the
//! patch matrix (positions × kh·kw·in_channels) times the kernel viewed as
//! (kh·kw·in_channels × filters). Backward runs the same GEMMs transposed and
//! scatters the patch gradient back (col2im).
//!
//! Conv1D is Conv2D on images of height 1. Depthwise convolutions (one input
//! channel per group: DepthwiseConv2D, or groups = in_channels) have their own
//! products on the patch matrix. Other grouped convolutions run as one dense
//! convolution with a block-diagonal kernel: simple and exact, at the price of
//! `groups` times the multiply-adds.

use super::affine::AffineOutput;
use super::conv_pool::{self, ConvPoolShape, MaxPoolTail};
use super::depthwise::Depthwise;
use super::im2col::Patches;
use super::window::{image_shape, padding, pair, sequence_shape, Axis, Padding};
use super::{field, usize_field, Ctx, Layer, Param, PoolWindow};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::matmul::Gemm;
use crate::rng::Key;
use crate::small_k;
use serde_json::Value;

pub struct Conv2D {
    geometry: Patches,
    filters: usize,
    groups: usize,
    output_shape: Vec<usize>,
    /// [kernel (kh, kw, in_channels / groups, filters), bias (filters)?]
    params: Vec<Param>,
    out: AffineOutput,
    /// The im2col matrix of the last forward pass, reused by backward.
    patches: Vec<f32>,
    patch_grads: Vec<f32>,
    /// With groups > 1: the block-diagonal (kh, kw, in_channels, filters)
    /// kernel and its gradient.
    full_kernel: Vec<f32>,
    full_grad: Vec<f32>,
    /// Set when every group has one input channel.
    depthwise: Option<Depthwise>,
    /// The max pool that follows, when this layer took it over.
    pool: Option<MaxPoolTail>,
    /// With a pool taken over: the dense gradient of the convolution's output,
    /// built only when the input gradient is wanted.
    conv_grads: Vec<f32>,
}

/// Spatial geometry of a convolution, read from a config in its 2-D or 1-D form.
struct Geometry {
    rows: Axis,
    cols: Axis,
    in_channels: usize,
    /// Kernel taps along each axis.
    kernel: (usize, usize),
}

/// A positive count from `config[key]` given as an int or a list of one int (1-D layers).
fn single(config: &Value, name: &str, key: &str) -> Result<usize> {
    let v = field(config, key);
    let n = v
        .as_u64()
        .or_else(|| match v.as_array().map(Vec::as_slice) {
            Some([one]) => one.as_u64(),
            _ => None,
        })
        .filter(|&n| n > 0);
    n.map(|n| n as usize).ok_or_else(|| {
        Error(format!(
            "{name}: '{key}' must be a positive integer, got {v}"
        ))
    })
}

impl Geometry {
    fn image(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let (h, w, in_channels) = image_shape(name, input_shape)?;
        let (kh, kw) = pair(config, name, "kernel_size")?;
        let (sh, sw) = pair(config, name, "strides")?;
        let (dh, dw) = pair(config, name, "dilation_rate")?;
        let pad = padding(config, name, false)?;
        Ok(Geometry {
            rows: Axis::new(name, h, kh, sh, dh, pad)?,
            cols: Axis::new(name, w, kw, sw, dw, pad)?,
            in_channels,
            kernel: (kh, kw),
        })
    }

    /// A sequence of `steps` is an image of height 1.
    fn sequence(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let (steps, in_channels) = sequence_shape(name, input_shape)?;
        let k = single(config, name, "kernel_size")?;
        let s = single(config, name, "strides")?;
        let d = single(config, name, "dilation_rate")?;
        let pad = padding(config, name, true)?;
        Ok(Geometry {
            rows: Axis::new(name, 1, 1, 1, 1, Padding::Valid)?,
            cols: Axis::new(name, steps, k, s, d, pad)?,
            in_channels,
            kernel: (1, k),
        })
    }
}

impl Conv2D {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let g = Geometry::image(name, config, input_shape)?;
        let (filters, groups) = Self::filters_and_groups(name, config, g.in_channels)?;
        let kernel = [g.kernel.0, g.kernel.1, g.in_channels / groups, filters];
        let conv = Self::new(config, g, filters, groups, &kernel, key)?;
        Ok(conv)
    }

    /// Conv1D: kernel (k, in_channels / groups, filters), padding may be "causal".
    pub fn build_1d(name: &str, config: &Value, input_shape: &[usize], key: Key) -> Result<Self> {
        let g = Geometry::sequence(name, config, input_shape)?;
        let (filters, groups) = Self::filters_and_groups(name, config, g.in_channels)?;
        let kernel = [g.kernel.1, g.in_channels / groups, filters];
        let mut conv = Self::new(config, g, filters, groups, &kernel, key)?;
        conv.output_shape.remove(0);
        Ok(conv)
    }

    /// DepthwiseConv2D: every input channel convolved with its own
    /// `depth_multiplier` kernels; kernel (kh, kw, in_channels, depth_multiplier),
    /// which is the grouped kernel (kh, kw, 1, in_channels · depth_multiplier)
    /// with groups = in_channels, laid out the same in memory.
    pub fn build_depthwise(
        name: &str,
        config: &Value,
        input_shape: &[usize],
        key: Key,
    ) -> Result<Self> {
        let g = Geometry::image(name, config, input_shape)?;
        let dm = usize_field(config, name, "depth_multiplier")?;
        if dm == 0 {
            return Err(Error(format!(
                "{name}: 'depth_multiplier' must be a positive integer, got 0"
            )));
        }
        let c = g.in_channels;
        let kernel = [g.kernel.0, g.kernel.1, c, dm];
        Self::new(config, g, c * dm, c, &kernel, key)
    }

    fn filters_and_groups(
        name: &str,
        config: &Value,
        in_channels: usize,
    ) -> Result<(usize, usize)> {
        let filters = usize_field(config, name, "filters")?;
        if filters == 0 {
            return Err(Error(format!(
                "{name}: 'filters' must be a positive integer, got 0"
            )));
        }
        let groups = match field(config, "groups") {
            Value::Null => 1,
            _ => usize_field(config, name, "groups")?,
        };
        if groups == 0 || !filters.is_multiple_of(groups) || !in_channels.is_multiple_of(groups) {
            return Err(Error(format!(
                "{name}: 'groups' ({groups}) must divide both filters ({filters}) and the \
                 input channels ({in_channels})"
            )));
        }
        Ok((filters, groups))
    }

    fn new(
        config: &Value,
        g: Geometry,
        filters: usize,
        groups: usize,
        kernel_shape: &[usize],
        key: Key,
    ) -> Result<Self> {
        let activation = Activation::from_spec(field(config, "activation"))?;
        let use_bias = field(config, "use_bias").as_bool().unwrap_or(true);
        let params = super::kernel_and_bias(config, kernel_shape, filters, use_bias, key)?;
        let depthwise = (groups > 1 && groups == g.in_channels).then_some(Depthwise {
            taps: g.kernel.0 * g.kernel.1,
            channels: g.in_channels,
            multiplier: filters / groups,
        });
        Ok(Conv2D {
            geometry: Patches {
                rows: g.rows,
                cols: g.cols,
                channels: g.in_channels,
            },
            filters,
            groups,
            output_shape: vec![g.rows.output, g.cols.output, filters],
            params,
            out: AffineOutput::new(activation, use_bias),
            patches: Vec::new(),
            patch_grads: Vec::new(),
            full_kernel: Vec::new(),
            full_grad: Vec::new(),
            depthwise,
            pool: None,
            conv_grads: Vec::new(),
        })
    }

    /// (taps, channels per group, filters per group).
    fn group_sizes(&self) -> (usize, usize, usize) {
        let taps = self.geometry.rows.kernel * self.geometry.cols.kernel;
        (
            taps,
            self.geometry.channels / self.groups,
            self.filters / self.groups,
        )
    }

    /// Writes the grouped kernel into the zero blocks of a dense one.
    fn expand_kernel(&mut self) {
        let (taps, cg, fg) = self.group_sizes();
        let (c, f) = (self.geometry.channels, self.filters);
        let grouped = self.params[0].value_slice();
        self.full_kernel.clear();
        self.full_kernel.resize(taps * c * f, 0.0);
        for t in 0..taps {
            for ci in 0..c {
                let g = ci / cg;
                let src = &grouped[(t * cg + ci % cg) * f..][..f];
                let dst = &mut self.full_kernel[(t * c + ci) * f..][..f];
                dst[g * fg..][..fg].copy_from_slice(&src[g * fg..][..fg]);
            }
        }
    }

    /// dx from dz over the `m` output positions of the batch (not depthwise): the
    /// patch gradient dz·Wᵀ, summed back onto the images.
    fn input_grad(&mut self, dz: &[f32], dx: &mut [f32], m: usize) {
        let (k, f) = (self.geometry.width(), self.filters);
        let mut grads = std::mem::take(&mut self.patch_grads);
        grads.resize(m * k, 0.0);
        let kernel = if self.groups > 1 {
            &self.full_kernel
        } else {
            self.params[0].value_slice()
        };
        Gemm::new(m, f, k)
            .trans_b()
            .run(dz, kernel, &mut grads, false);
        self.geometry.col2im_batch(&grads, dx);
        self.patch_grads = grads;
    }

    /// Keeps the diagonal blocks of the dense kernel gradient.
    fn compress_grad(&mut self) {
        let (taps, cg, fg) = self.group_sizes();
        let (c, f) = (self.geometry.channels, self.filters);
        let grad = self.params[0].grad_slice_mut();
        // Every group fills its own filters of each grouped row.
        for t in 0..taps {
            for ci in 0..c {
                let g = ci / cg;
                let src = &self.full_grad[(t * c + ci) * f..][..f];
                let dst = &mut grad[(t * cg + ci % cg) * f..][..f];
                dst[g * fg..][..fg].copy_from_slice(&src[g * fg..][..fg]);
            }
        }
    }
}

impl Layer for Conv2D {
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

    /// Only the direct small-k product is fused: it is where the convolution's
    /// output, not its arithmetic, dominates the time.
    fn absorb_max_pool(&mut self, window: PoolWindow) -> bool {
        let (k, f) = (self.geometry.width(), self.filters);
        if self.groups > 1
            || k > small_k::MAX_K
            || f > small_k::MAX_N
            || !conv_pool::fusable(self.out.activation)
        {
            return false;
        }
        let (rows, cols) = (self.geometry.rows.output, self.geometry.cols.output);
        self.pool = MaxPoolTail::new(
            ConvPoolShape {
                conv_cols: cols,
                width: k,
                filters: f,
                window,
                rows: rows / window.rows,
                cols: cols / window.cols,
            },
            &self.geometry,
        );
        self.pool.is_some()
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, _ctx: &Ctx) {
        if let Some(pool) = &mut self.pool {
            // Patch rows come straight from the images: no patch matrix.
            let bias = self.out.use_bias.then(|| self.params[1].value_slice());
            let kernel = self.params[0].value_slice();
            pool.forward(x, kernel, self.out.row_epilogue(bias), y);
            return;
        }
        let (k, p) = (self.geometry.width(), self.geometry.positions());
        let mut patches = std::mem::take(&mut self.patches);
        patches.resize(rows * p * k, 0.0);
        self.geometry.im2col_batch(x, &mut patches);
        if let Some(dw) = self.depthwise {
            let bias = self.out.use_bias.then(|| self.params[1].value_slice());
            let kernel = self.params[0].value_slice();
            self.out
                .forward_with(self.filters, bias, y, |z| dw.forward(&patches, kernel, z));
            self.patches = patches;
            return;
        }
        if self.groups > 1 {
            self.expand_kernel();
        }
        let gemm = Gemm::new(rows * p, k, self.filters);
        let bias = self.out.use_bias.then(|| self.params[1].value_slice());
        let kernel = if self.groups > 1 {
            &self.full_kernel
        } else {
            self.params[0].value_slice()
        };
        if k <= small_k::MAX_K && self.filters <= small_k::MAX_N {
            // Few input channels: a direct product beats GEMM, and when the activation's
            // derivative needs only the output, bias and activation run on each row
            // while it is in L1.
            let f = self.filters;
            if self.out.activation.backward_from_output() {
                small_k::product(&patches, kernel, k, f, y, self.out.row_epilogue(bias));
            } else {
                self.out.forward_with(f, bias, y, |z| {
                    small_k::product(&patches, kernel, k, f, z, |_| {})
                });
            }
        } else {
            self.out.forward(gemm, &patches, kernel, bias, y);
        }
        self.patches = patches;
    }

    fn backward(
        &mut self,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        let (k, p, f) = (
            self.geometry.width(),
            self.geometry.positions(),
            self.filters,
        );
        let m = rows * p;
        let bias_grad = self.params.get_mut(1).map(|b| b.grad_slice_mut());
        // With a pool taken over, y and dy are the pooled values and their gradient:
        // the activation's derivative and the bias gradient need only those.
        self.out.backward(y, dy, f, bias_grad);
        if let Some(pool) = &mut self.pool {
            pool.kernel_grad(x, dy, self.params[0].grad_slice_mut());
            if let Some(dx) = dx {
                let mut dense = std::mem::take(&mut self.conv_grads);
                dense.resize(m * f, 0.0);
                pool.scatter(dy, p, &mut dense);
                self.input_grad(&dense, dx, m);
                self.conv_grads = dense;
            }
            return;
        }
        let dz: &[f32] = dy;
        if let Some(dw) = self.depthwise {
            dw.kernel_grad(&self.patches[..m * k], dz, self.params[0].grad_slice_mut());
            if let Some(dx) = dx {
                let mut grads = std::mem::take(&mut self.patch_grads);
                grads.resize(m * k, 0.0);
                dw.patch_grads(dz, self.params[0].value_slice(), &mut grads);
                self.geometry.col2im_batch(&grads, dx);
                self.patch_grads = grads;
            }
            return;
        }
        // dW = patchesᵀ·dz
        let dw_gemm = Gemm::new(k, m, f).trans_a();
        if self.groups > 1 {
            self.full_grad.resize(k * f, 0.0);
            dw_gemm.run(&self.patches[..m * k], dz, &mut self.full_grad, false);
            self.compress_grad();
        } else {
            dw_gemm.run(
                &self.patches[..m * k],
                dz,
                self.params[0].grad_slice_mut(),
                false,
            );
        }
        if let Some(dx) = dx {
            self.input_grad(dz, dx, m);
        }
    }
}
