//! im2col and its reverse for channels-last images: each output position's
//! receptive field becomes one row of a (positions × kh·kw·channels) matrix,
//! so a convolution is one GEMM. Shared by Conv2D and Conv2DTranspose.

use super::window::Axis;
use crate::parallel::PARALLEL_THRESHOLD;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Patches {
    pub rows: Axis,
    pub cols: Axis,
    pub channels: usize,
}

impl Patches {
    /// Width of one patch row: kh·kw·channels.
    pub fn width(&self) -> usize {
        self.rows.kernel * self.cols.kernel * self.channels
    }

    /// Output positions per sample.
    pub fn positions(&self) -> usize {
        self.rows.output * self.cols.output
    }

    /// Values in one input image.
    pub fn image_size(&self) -> usize {
        self.rows.input * self.cols.input * self.channels
    }

    /// Fills the patch rows of one sample (zeros where the window hangs over the padding).
    pub fn im2col(&self, image: &[f32], patches: &mut [f32]) {
        let (c, k) = (self.channels, self.width());
        let kw = self.cols.kernel;
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let row = &mut patches[(oy * self.cols.output + ox) * k..][..k];
                // Undilated windows wholly inside a row are one contiguous run of the image.
                let first = (ox * self.cols.stride).checked_sub(self.cols.pad);
                let run = match first {
                    Some(ix) if self.cols.dilation == 1 && ix + kw <= self.cols.input => Some(ix),
                    _ => None,
                };
                for ky in 0..self.rows.kernel {
                    let dst_row = &mut row[ky * kw * c..][..kw * c];
                    let Some(iy) = self.rows.source(oy, ky) else {
                        dst_row.fill(0.0);
                        continue;
                    };
                    if let Some(ix) = run {
                        let src = &image[(iy * self.cols.input + ix) * c..][..kw * c];
                        // A plain loop: these runs are too short for a memcpy call to pay.
                        for (d, &v) in dst_row.iter_mut().zip(src) {
                            *d = v;
                        }
                        continue;
                    }
                    for kx in 0..kw {
                        let dst = &mut dst_row[kx * c..][..c];
                        match self.cols.source(ox, kx) {
                            Some(ix) => {
                                let src = &image[(iy * self.cols.input + ix) * c..][..c];
                                for (d, &v) in dst.iter_mut().zip(src) {
                                    *d = v;
                                }
                            }
                            None => dst.fill(0.0),
                        }
                    }
                }
            }
        }
    }

    /// Sums the patch rows of one sample back onto the image positions they came from.
    pub fn col2im(&self, patches: &[f32], image: &mut [f32]) {
        let (c, k) = (self.channels, self.width());
        image.fill(0.0);
        for oy in 0..self.rows.output {
            for ox in 0..self.cols.output {
                let row = &patches[(oy * self.cols.output + ox) * k..][..k];
                for ky in 0..self.rows.kernel {
                    for kx in 0..self.cols.kernel {
                        if let (Some(iy), Some(ix)) =
                            (self.rows.source(oy, ky), self.cols.source(ox, kx))
                        {
                            let src = &row[(ky * self.cols.kernel + kx) * c..][..c];
                            let dst = &mut image[(iy * self.cols.input + ix) * c..][..c];
                            for (d, &s) in dst.iter_mut().zip(src) {
                                *d += s;
                            }
                        }
                    }
                }
            }
        }
    }

    /// im2col for every sample of `images` into `patches`.
    pub fn im2col_batch(&self, images: &[f32], patches: &mut [f32]) {
        let k = self.positions() * self.width();
        per_sample(images, self.image_size(), patches, k, |x, p| {
            self.im2col(x, p)
        });
    }

    /// col2im for every sample of `patches` into `images`.
    pub fn col2im_batch(&self, patches: &[f32], images: &mut [f32]) {
        let k = self.positions() * self.width();
        per_sample(patches, k, images, self.image_size(), |p, x| {
            self.col2im(p, x)
        });
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
