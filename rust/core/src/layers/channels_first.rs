//! data_format="channels_first" for any channels-last layer: each sample is
//! transposed from (channels, positions...) to (positions..., channels) before
//! the inner layer and back after it, and the same around its backward pass.

use super::{Ctx, Layer, Param};
use crate::activation::Activation;

pub struct ChannelsFirst {
    inner: Box<dyn Layer>,
    /// Channels and positions per sample, of the input and the output.
    input: (usize, usize),
    output: (usize, usize),
    output_shape: Vec<usize>,
    /// The inner layer's channels-last input and output of the last forward.
    x_last: Vec<f32>,
    y_last: Vec<f32>,
    dy_last: Vec<f32>,
    dx_last: Vec<f32>,
}

/// (channels, positions) ↔ (positions, channels) for every sample: `from` holds
/// samples of `a × b` values, written to `to` as `b × a`.
fn transpose(from: &[f32], to: &mut [f32], a: usize, b: usize) {
    for (f, t) in from.chunks_exact(a * b).zip(to.chunks_exact_mut(a * b)) {
        for i in 0..a {
            for j in 0..b {
                t[j * a + i] = f[i * b + j];
            }
        }
    }
}

impl ChannelsFirst {
    /// `build_last` builds the inner layer for a channels-last input shape.
    pub fn wrap(
        input_shape: &[usize],
        build_last: impl FnOnce(&[usize]) -> crate::Result<Box<dyn Layer>>,
    ) -> crate::Result<Self> {
        let (&c, spatial) = input_shape
            .split_first()
            .ok_or_else(|| crate::error::Error("channels_first needs a channel axis".into()))?;
        let last: Vec<usize> = spatial.iter().copied().chain([c]).collect();
        let inner = build_last(&last)?;
        let out = inner.output_shape();
        let (&oc, ospatial) = out.split_last().expect("layers have an output shape");
        let output_shape: Vec<usize> = std::iter::once(oc)
            .chain(ospatial.iter().copied())
            .collect();
        Ok(ChannelsFirst {
            input: (c, spatial.iter().product()),
            output: (oc, ospatial.iter().product()),
            output_shape,
            inner,
            x_last: Vec::new(),
            y_last: Vec::new(),
            dy_last: Vec::new(),
            dx_last: Vec::new(),
        })
    }
}

impl Layer for ChannelsFirst {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn params(&self) -> &[Param] {
        self.inner.params()
    }

    fn params_mut(&mut self) -> &mut [Param] {
        self.inner.params_mut()
    }

    fn final_activation(&self) -> Option<Activation> {
        self.inner.final_activation()
    }

    fn set_fused_output(&mut self, fused: bool) {
        self.inner.set_fused_output(fused);
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, ctx: &Ctx) {
        let ((c, p), (oc, op)) = (self.input, self.output);
        self.x_last.resize(x.len(), 0.0);
        self.y_last.resize(y.len(), 0.0);
        transpose(x, &mut self.x_last, c, p);
        self.inner
            .forward(&self.x_last, &mut self.y_last, rows, ctx);
        transpose(&self.y_last, y, op, oc);
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        let ((c, p), (oc, op)) = (self.input, self.output);
        self.dy_last.resize(dy.len(), 0.0);
        transpose(dy, &mut self.dy_last, oc, op);
        match dx {
            Some(dx) => {
                self.dx_last.resize(dx.len(), 0.0);
                self.inner.backward(
                    &self.x_last,
                    &self.y_last,
                    &mut self.dy_last,
                    Some(&mut self.dx_last),
                    rows,
                );
                transpose(&self.dx_last, dx, p, c);
            }
            None => self
                .inner
                .backward(&self.x_last, &self.y_last, &mut self.dy_last, None, rows),
        }
    }
}
