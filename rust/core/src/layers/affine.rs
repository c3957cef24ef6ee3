//! The output stage shared by Dense and Conv2D: y = activation(z + bias), where
//! z came from a GEMM, and its backward pass.

use crate::activation::Activation;
use crate::matmul::Gemm;
use crate::parallel::for_each_row;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct AffineOutput {
    pub activation: Activation,
    pub use_bias: bool,
    /// Pre-activations, kept only when the activation's derivative needs them.
    pre_activation: Vec<f32>,
    /// Skip the activation's derivative: the loss already differentiated through it.
    pub fused_output: bool,
    /// Flag NaN/inf among the pre-activations of each forward pass (`Layer::watch_non_finite`).
    pub watch_non_finite: bool,
    saw_non_finite: AtomicBool,
}

impl AffineOutput {
    pub fn new(activation: Activation, use_bias: bool) -> Self {
        AffineOutput {
            activation,
            use_bias,
            pre_activation: Vec::new(),
            fused_output: false,
            watch_non_finite: false,
            saw_non_finite: AtomicBool::new(false),
        }
    }

    /// y = activation(x·W + bias) for a GEMM `gemm` (m rows of `gemm.n` units),
    /// with bias and activation fused into one pass over the product.
    pub fn forward(
        &mut self,
        gemm: Gemm,
        x: &[f32],
        kernel: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        self.forward_with(gemm.n, bias, y, |z| gemm.run(x, kernel, z, false));
    }

    /// y = activation(z + bias) where `product` writes z (rows of `units`) into
    /// the buffer it is given: a GEMM, or a GEMM and a scatter (Conv2DTranspose).
    pub fn forward_with(
        &mut self,
        units: usize,
        bias: Option<&[f32]>,
        y: &mut [f32],
        product: impl FnOnce(&mut [f32]),
    ) {
        let act = self.activation;
        let (watch, saw) = (self.watch_non_finite, &self.saw_non_finite);
        saw.store(false, Ordering::Relaxed);
        let add_bias = |row: &mut [f32]| {
            if let Some(b) = bias {
                for (v, &bv) in row.iter_mut().zip(b) {
                    *v += bv;
                }
            }
            if watch && has_non_finite(row) {
                saw.store(true, Ordering::Relaxed);
            }
        };
        if act.backward_from_output() {
            product(y);
            for_each_row(y, units, |_, row| {
                add_bias(row);
                act.forward_in_place(row, units);
            });
        } else {
            self.pre_activation.resize(y.len(), 0.0);
            let z = &mut self.pre_activation;
            product(z);
            for_each_row(z, units, |_, row| add_bias(row));
            act.forward(z, y, units);
        }
    }

    /// Whether the last forward pass flagged a NaN or an infinity (when watching).
    pub fn saw_non_finite(&self) -> bool {
        self.saw_non_finite.load(Ordering::Relaxed)
    }

    /// Bias and activation applied in place to one output row, for kernels that
    /// finish rows one at a time while they are in L1. Only for activations whose
    /// derivative needs the output alone (nothing else is kept for backward).
    pub fn row_epilogue<'a>(&self, bias: Option<&'a [f32]>) -> impl Fn(&mut [f32]) + Sync + 'a {
        let act = self.activation;
        debug_assert!(act.backward_from_output());
        move |row: &mut [f32]| {
            if let Some(b) = bias {
                row.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv);
            }
            act.map_in_place(row);
        }
    }

    /// Turns dy into dz = dy · activation'(z) in place, and writes the bias
    /// gradient (column sums in a fixed row order: deterministic).
    pub fn backward(&self, y: &[f32], dy: &mut [f32], units: usize, bias_grad: Option<&mut [f32]>) {
        if !self.fused_output {
            self.activation.backward(&self.pre_activation, y, dy, units);
        }
        if let Some(db) = bias_grad {
            db.fill(0.0);
            for row in dy.chunks_exact(units) {
                for (g, &d) in db.iter_mut().zip(row) {
                    *g += d;
                }
            }
        }
    }
}

/// Whether `row` holds a NaN or an infinity: an OR over exponent bits, which vectorises.
fn has_non_finite(row: &[f32]) -> bool {
    row.iter().fold(false, |acc, v| {
        acc | (v.to_bits() & 0x7f80_0000 == 0x7f80_0000)
    })
}
