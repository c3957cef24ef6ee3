//! Training data as given by the caller, read batch by batch.
//!
//! Features keep their original dtype (uint8 images stay uint8): each batch is
//! gathered and converted to f32 into a reused buffer, so no float copy of the
//! whole data set is ever made.

use crate::parallel::PARALLEL_THRESHOLD;
use rayon::prelude::*;

#[derive(Clone, Copy)]
pub enum Features<'a> {
    U8(&'a [u8]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Features<'_> {
    pub fn len(&self) -> usize {
        match self {
            Features::U8(v) => v.len(),
            Features::F32(v) => v.len(),
            Features::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of the first NaN or infinity among values `start..end`, if any.
    /// A branch-free OR over exponent bits vectorises, so clean data costs one
    /// fast pass; only a dirty block is searched element by element.
    pub fn first_non_finite(&self, start: usize, end: usize) -> Option<usize> {
        fn scan<T: Copy + Sync>(v: &[T], bad: impl Fn(T) -> bool + Sync) -> Option<usize> {
            const BLOCK: usize = 4096;
            let dirty = |block: &[T]| block.iter().fold(false, |acc, &x| acc | bad(x));
            // Big inputs are scanned by the whole pool (the length is checked first, so
            // small ones, which may run outside the pool, never touch rayon).
            let b = if v.len() >= 8 * PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
                v.par_chunks(BLOCK).position_first(dirty)
            } else {
                v.chunks(BLOCK).position(dirty)
            }?;
            v[b * BLOCK..]
                .iter()
                .position(|&x| bad(x))
                .map(|i| b * BLOCK + i)
        }
        let found = match self {
            Features::U8(_) => None,
            Features::F32(v) => scan(&v[start..end], |x: f32| {
                x.to_bits() & 0x7f80_0000 == 0x7f80_0000
            }),
            Features::F64(v) => scan(&v[start..end], |x: f64| {
                x.to_bits() & 0x7ff0_0000_0000_0000 == 0x7ff0_0000_0000_0000
            }),
        };
        found.map(|i| start + i)
    }

    /// Copy rows `idx` (each `width` values) into `out`, converting to f32.
    pub fn gather(&self, width: usize, idx: &[u32], out: &mut [f32]) {
        let out = &mut out[..idx.len() * width];
        let copy_row = |(r, dst): (usize, &mut [f32])| {
            let start = idx[r] as usize * width;
            match self {
                Features::U8(v) => dst
                    .iter_mut()
                    .zip(&v[start..start + width])
                    .for_each(|(d, &s)| *d = s as f32),
                Features::F32(v) => dst.copy_from_slice(&v[start..start + width]),
                Features::F64(v) => dst
                    .iter_mut()
                    .zip(&v[start..start + width])
                    .for_each(|(d, &s)| *d = s as f32),
            }
        };
        if width == 0 {
            return;
        }
        if out.len() >= GATHER_PARALLEL && rayon::current_num_threads() > 1 {
            out.par_chunks_mut(width).enumerate().for_each(copy_row);
        } else {
            out.chunks_mut(width).enumerate().for_each(copy_row);
        }
    }
}

/// Gathers of this many values or more are split over the pool. Lower than the
/// elementwise threshold: scattered rows wait on memory, and two cores keep twice
/// as many loads in flight.
pub const GATHER_PARALLEL: usize = 4096;

/// Inputs, targets and optional per-sample weights of `n` samples.
#[derive(Clone, Copy)]
pub struct Dataset<'a> {
    pub x: Features<'a>,
    pub x_width: usize,
    pub y: &'a [f32],
    pub y_width: usize,
    pub weights: Option<&'a [f32]>,
    /// Weights per sample: 1, or one per output of a model with several.
    pub w_width: usize,
    pub n: usize,
}

impl<'a> Dataset<'a> {
    /// Checks that every array holds exactly `n` samples.
    pub fn new(
        x: Features<'a>,
        x_width: usize,
        y: &'a [f32],
        y_width: usize,
        weights: Option<&'a [f32]>,
    ) -> crate::Result<Self> {
        if x_width == 0 || !x.len().is_multiple_of(x_width) {
            crate::bail!(
                "x has {} values, not a whole number of samples of {} values",
                x.len(),
                x_width
            );
        }
        let n = x.len() / x_width;
        if y.len() != n * y_width {
            crate::bail!(
                "y has {} values, expected {} samples of {} values",
                y.len(),
                n,
                y_width
            );
        }
        let mut w_width = 1;
        if let Some(w) = weights {
            if n == 0 || !w.len().is_multiple_of(n) || w.is_empty() {
                crate::bail!(
                    "sample_weight has {} values, expected {} (or a whole number per sample)",
                    w.len(),
                    n
                );
            }
            w_width = w.len() / n;
        }
        Ok(Dataset {
            x,
            x_width,
            y,
            y_width,
            weights,
            w_width,
            n,
        })
    }

    pub fn gather_y(&self, idx: &[u32], out: &mut [f32]) {
        for (r, &i) in idx.iter().enumerate() {
            let i = i as usize;
            out[r * self.y_width..(r + 1) * self.y_width]
                .copy_from_slice(&self.y[i * self.y_width..(i + 1) * self.y_width]);
        }
    }

    /// The samples' weights (`w_width` each) into `out`; false without weights.
    pub fn gather_weights(&self, idx: &[u32], out: &mut [f32]) -> bool {
        let width = self.w_width;
        match self.weights {
            Some(w) => {
                for (o, &i) in out.chunks_mut(width).zip(idx) {
                    let i = i as usize;
                    o.copy_from_slice(&w[i * width..(i + 1) * width]);
                }
                true
            }
            None => false,
        }
    }
}
