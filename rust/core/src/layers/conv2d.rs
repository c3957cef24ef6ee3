//! Conv2D (channels last) as im2col + GEMM: each output position's receptive
//! field becomes a row of a (positions × kh·kw·in_channels) matrix, multiplied
//! by the kernel viewed as (kh·kw·in_channels × filters). Backward runs the same
//! GEMMs transposed and scatters the column gradient back (col2im).

use super::affine::AffineOutput;
use super::window::{image_shape, pair, same_padding, Axis};
use super::{usize_field, Ctx, Layer, Param};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::matmul::Gemm;
use crate::parallel::PARALLEL_THRESHOLD;
use crate::rng::Key;
use rayon::prelude::*;
use serde_json::Value;

pub struct Conv2D {
    rows: Axis,
    cols: Axis,
    in_channels: usize,
    filters: usize,
    output_shape: Vec<usize>,
    /// [kernel (kh, kw, in_channels, filters), bias (filters)?]
    params: Vec<Param>,
    out: AffineOutput,
    /// The im2col matrix of the last forward pass, reused by backward.
    patches: Vec<f32>,
    patch_grads: Vec<f32>,
}

impl Conv2D {
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
        let same = same_padding(config, name)?;
        let rows = Axis::new(name, h, kh, sh, dh, same)?;
        let cols = Axis::new(name, w, kw, sw, dw, same)?;
        let activation = Activation::from_spec(super::field(config, "activation"))?;
        let use_bias = super::field(config, "use_bias").as_bool().unwrap_or(true);
        let params = super::kernel_and_bias(
            config,
            &[kh, kw, in_channels, filters],
            filters,
            use_bias,
            key,
        )?;
        Ok(Conv2D {
            rows,
            cols,
            in_channels,
            filters,
            output_shape: vec![rows.output, cols.output, filters],
            params,
            out: AffineOutput::new(activation, use_bias),
            patches: Vec::new(),
            patch_grads: Vec::new(),
        })
    }

    fn patch_width(&self) -> usize {
        self.rows.kernel * self.cols.kernel * self.in_channels
    }

    fn positions(&self) -> usize {
        self.rows.output * self.cols.output
    }

    /// Fills the im2col rows of one sample (zeros where the window hangs over the padding).
    fn im2col(&self, image: &[f32], patches: &mut [f32]) {
        let (c, k) = (self.in_channels, self.patch_width());
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let row = &mut patches[(oy * self.cols.output + ox) * k..][..k];
                for ky in 0..self.rows.kernel {
                    for kx in 0..self.cols.kernel {
                        let dst = &mut row[(ky * self.cols.kernel + kx) * c..][..c];
                        match (self.rows.source(oy, ky), self.cols.source(ox, kx)) {
                            (Some(iy), Some(ix)) => {
                                dst.copy_from_slice(&image[(iy * self.cols.input + ix) * c..][..c])
                            }
                            _ => dst.fill(0.0),
                        }
                    }
                }
            }
        }
    }

    /// Adds the column gradient of one sample back onto its input positions.
    fn col2im(&self, patch_grads: &[f32], image_grad: &mut [f32]) {
        let (c, k) = (self.in_channels, self.patch_width());
        image_grad.fill(0.0);
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let row = &patch_grads[(oy * self.cols.output + ox) * k..][..k];
                for ky in 0..self.rows.kernel {
                    for kx in 0..self.cols.kernel {
                        if let (Some(iy), Some(ix)) =
                            (self.rows.source(oy, ky), self.cols.source(ox, kx))
                        {
                            let src = &row[(ky * self.cols.kernel + kx) * c..][..c];
                            let dst = &mut image_grad[(iy * self.cols.input + ix) * c..][..c];
                            for (d, &s) in dst.iter_mut().zip(src) {
                                *d += s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs `f` on matching per-sample chunks of `a` (read) and `b` (written), in
/// parallel when the work is big enough; each sample is independent.
fn per_sample(
    a: &[f32],
    a_len: usize,
    b: &mut [f32],
    b_len: usize,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) {
    if b.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
        a.par_chunks(a_len)
            .zip(b.par_chunks_mut(b_len))
            .for_each(|(x, y)| f(x, y));
    } else {
        a.chunks(a_len)
            .zip(b.chunks_mut(b_len))
            .for_each(|(x, y)| f(x, y));
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

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, _ctx: &Ctx) {
        let (k, p) = (self.patch_width(), self.positions());
        let image = self.rows.input * self.cols.input * self.in_channels;
        let mut patches = std::mem::take(&mut self.patches);
        patches.resize(rows * p * k, 0.0);
        per_sample(x, image, &mut patches, p * k, |img, pt| {
            self.im2col(img, pt)
        });
        let gemm = Gemm::new(rows * p, k, self.filters);
        let bias = self.out.use_bias.then(|| self.params[1].value_slice());
        self.out
            .forward(gemm, &patches, self.params[0].value_slice(), bias, y);
        self.patches = patches;
    }

    fn backward(
        &mut self,
        _x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        let (k, p, f) = (self.patch_width(), self.positions(), self.filters);
        let m = rows * p;
        let bias_grad = self.params.get_mut(1).map(|b| b.grad_slice_mut());
        self.out.backward(y, dy, f, bias_grad);
        let dz: &[f32] = dy;
        // dW = patchesᵀ·dz
        Gemm::new(k, m, f).trans_a().run(
            &self.patches[..m * k],
            dz,
            self.params[0].grad_slice_mut(),
            false,
        );
        if let Some(dx) = dx {
            // d patches = dz·Wᵀ, then scattered back onto the image.
            let mut grads = std::mem::take(&mut self.patch_grads);
            grads.resize(m * k, 0.0);
            Gemm::new(m, f, k)
                .trans_b()
                .run(dz, self.params[0].value_slice(), &mut grads, false);
            let image = self.rows.input * self.cols.input * self.in_channels;
            per_sample(&grads, p * k, dx, image, |g, d| self.col2im(g, d));
            self.patch_grads = grads;
        }
    }
}
