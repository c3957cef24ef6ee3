//! The products of a depthwise convolution (one input channel per group) on
//! the im2col matrix: output channel f = c·dm + j reads only input channel c,
//! so each output costs kh·kw multiply-adds instead of kh·kw·channels.
//! Patch rows are laid out (tap, channel); the kernel (tap, channel·dm).

use crate::parallel::PARALLEL_THRESHOLD;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Depthwise {
    pub taps: usize,
    pub channels: usize,
    pub multiplier: usize,
}

/// Rows per block of the kernel-gradient sums: fixed, so they are added in
/// the same order whatever the number of threads.
const BLOCK_ROWS: usize = 256;

impl Depthwise {
    fn filters(&self) -> usize {
        self.channels * self.multiplier
    }

    /// z = patches ⊛ kernel, row by row.
    pub fn forward(&self, patches: &[f32], kernel: &[f32], z: &mut [f32]) {
        let (c, f, dm) = (self.channels, self.filters(), self.multiplier);
        let row = |(p, zr): (&[f32], &mut [f32])| {
            zr.fill(0.0);
            for (pt, kt) in p.chunks_exact(c).zip(kernel.chunks_exact(f)) {
                if dm == 1 {
                    for ((o, &x), &k) in zr.iter_mut().zip(pt).zip(kt) {
                        *o += x * k;
                    }
                } else {
                    for ((os, &x), ks) in zr.chunks_exact_mut(dm).zip(pt).zip(kt.chunks_exact(dm)) {
                        os.iter_mut().zip(ks).for_each(|(o, &k)| *o += x * k);
                    }
                }
            }
        };
        let width = self.taps * c;
        if z.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
            patches
                .par_chunks_exact(width)
                .zip(z.par_chunks_exact_mut(f))
                .for_each(row);
        } else {
            patches
                .chunks_exact(width)
                .zip(z.chunks_exact_mut(f))
                .for_each(row);
        }
    }

    /// dK = Σ over rows of patch ⊗ dz, per (tap, output channel).
    pub fn kernel_grad(&self, patches: &[f32], dz: &[f32], grad: &mut [f32]) {
        let (c, f, dm) = (self.channels, self.filters(), self.multiplier);
        let width = self.taps * c;
        let block = |(pb, db): (&[f32], &[f32])| {
            let mut acc = vec![0.0f32; self.taps * f];
            for (p, d) in pb.chunks_exact(width).zip(db.chunks_exact(f)) {
                for (pt, at) in p.chunks_exact(c).zip(acc.chunks_exact_mut(f)) {
                    if dm == 1 {
                        for ((a, &x), &g) in at.iter_mut().zip(pt).zip(d) {
                            *a += x * g;
                        }
                    } else {
                        for ((as_, &x), ds) in
                            at.chunks_exact_mut(dm).zip(pt).zip(d.chunks_exact(dm))
                        {
                            as_.iter_mut().zip(ds).for_each(|(a, &g)| *a += x * g);
                        }
                    }
                }
            }
            acc
        };
        let blocks = patches
            .chunks(BLOCK_ROWS * width)
            .zip(dz.chunks(BLOCK_ROWS * f));
        let partials: Vec<Vec<f32>> = if dz.len() >= PARALLEL_THRESHOLD {
            patches
                .par_chunks(BLOCK_ROWS * width)
                .zip(dz.par_chunks(BLOCK_ROWS * f))
                .map(block)
                .collect()
        } else {
            blocks.map(block).collect()
        };
        grad.fill(0.0);
        for p in &partials {
            grad.iter_mut().zip(p).for_each(|(g, &v)| *g += v);
        }
    }

    /// d patches = dz ⊛ kernelᵀ: each patch entry gathers its channel's dm outputs.
    pub fn patch_grads(&self, dz: &[f32], kernel: &[f32], grads: &mut [f32]) {
        let (c, f, dm) = (self.channels, self.filters(), self.multiplier);
        let row = |(d, g): (&[f32], &mut [f32])| {
            for (gt, kt) in g.chunks_exact_mut(c).zip(kernel.chunks_exact(f)) {
                for ((o, ds), ks) in gt
                    .iter_mut()
                    .zip(d.chunks_exact(dm))
                    .zip(kt.chunks_exact(dm))
                {
                    *o = ds.iter().zip(ks).map(|(&a, &b)| a * b).sum();
                }
            }
        };
        let width = self.taps * c;
        if grads.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
            dz.par_chunks_exact(f)
                .zip(grads.par_chunks_exact_mut(width))
                .for_each(row);
        } else {
            dz.chunks_exact(f)
                .zip(grads.chunks_exact_mut(width))
                .for_each(row);
        }
    }
}
