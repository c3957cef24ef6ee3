//! Strided walks: visit a result's elements in row-major order while reading
//! (or writing) other operands through per-axis strides. Broadcasting (stride
//! 0), transposes, slices, tiles and pads are all such walks, so they share one
//! loop. Size-1 axes are dropped and neighbouring axes that stay contiguous for
//! every operand are merged, so the common cases become a few long inner runs.

use super::{Dims, MAX_RANK};
use crate::parallel::PARALLEL_THRESHOLD;
use rayon::prelude::*;

/// The most axes a walk has: tile and repeat view a rank-r shape as 2r axes.
pub(crate) const WALK_RANK: usize = 2 * MAX_RANK;

/// Elements per block when a map over a result runs in parallel. Fixed, so
/// blocks never depend on the thread count.
const BLOCK: usize = 8192;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Walk<const N: usize> {
    rank: usize,
    dims: [usize; WALK_RANK],
    strides: [[usize; WALK_RANK]; N],
}

impl<const N: usize> Walk<N> {
    /// A walk over `dims` that finds operand k's element at
    /// `sum(index[axis] * strides[k][axis])`.
    pub fn new(dims: &[usize], strides: [&[usize]; N]) -> Self {
        let mut w = Walk {
            rank: 0,
            dims: [1; WALK_RANK],
            strides: [[0; WALK_RANK]; N],
        };
        for (ax, &d) in dims.iter().enumerate() {
            if d == 1 {
                continue;
            }
            if w.rank > 0 {
                let last = w.rank - 1;
                if (0..N).all(|k| w.strides[k][last] == strides[k][ax] * d) {
                    w.dims[last] *= d;
                    for (ws, s) in w.strides.iter_mut().zip(&strides) {
                        ws[last] = s[ax];
                    }
                    continue;
                }
            }
            w.dims[w.rank] = d;
            for (ws, s) in w.strides.iter_mut().zip(&strides) {
                ws[w.rank] = s[ax];
            }
            w.rank += 1;
        }
        w.rank = w.rank.max(1);
        w
    }

    /// How many elements the walk visits.
    pub fn len(&self) -> usize {
        self.dims[..self.rank].iter().product()
    }

    /// Each operand's stride along the innermost (run) axis.
    pub fn inner_strides(&self) -> [usize; N] {
        std::array::from_fn(|k| self.strides[k][self.rank - 1])
    }

    /// Calls `f(offsets, n)` for the runs covering elements `start..start+len`
    /// in order: a run is `n` consecutive elements along the innermost axis,
    /// operand k's first at `offsets[k]`, the next ones `inner_strides()[k]` on.
    pub fn runs(&self, start: usize, len: usize, mut f: impl FnMut([usize; N], usize)) {
        if len == 0 {
            return;
        }
        let r = self.rank;
        let last = r - 1;
        let mut idx = [0usize; WALK_RANK];
        let mut rem = start;
        for ax in (0..r).rev() {
            idx[ax] = rem % self.dims[ax];
            rem /= self.dims[ax];
        }
        let mut left = len;
        loop {
            let n = (self.dims[last] - idx[last]).min(left);
            let off = std::array::from_fn(|k| (0..r).map(|ax| idx[ax] * self.strides[k][ax]).sum());
            f(off, n);
            left -= n;
            if left == 0 {
                return;
            }
            // The run reached the end of its axis: carry into the outer axes.
            idx[last] = 0;
            let mut ax = last;
            while ax > 0 {
                ax -= 1;
                idx[ax] += 1;
                if idx[ax] < self.dims[ax] {
                    break;
                }
                idx[ax] = 0;
            }
        }
    }
}

/// Row-major strides of `dims` as read from a result of rank `rank` (right
/// aligned), 0 on axes where `dims` has size 1 or no axis: broadcasting.
pub(crate) fn broadcast_strides(dims: &[usize], rank: usize) -> [usize; WALK_RANK] {
    let mut s = [0usize; WALK_RANK];
    let pad = rank - dims.len();
    let mut acc = 1;
    for i in (0..dims.len()).rev() {
        if dims[i] != 1 {
            s[pad + i] = acc;
        }
        acc *= dims[i];
    }
    s
}

/// Row-major strides of a full shape, in a walk-sized array.
pub(crate) fn strides_of(d: &Dims) -> [usize; WALK_RANK] {
    let mut s = [0usize; WALK_RANK];
    s[..MAX_RANK].copy_from_slice(&d.strides());
    s
}

/// Calls `f(start, block)` on fixed blocks of `y`, in parallel when `y` is big.
/// Only for maps, where blocks are independent, so bits never depend on threads.
pub(crate) fn for_blocks(y: &mut [f32], f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if y.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
        y.par_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(i, b)| f(i * BLOCK, b));
    } else {
        y.chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(i, b)| f(i * BLOCK, b));
    }
}

/// y[j] ← x[offset of j]: a transpose, slice, tile or broadcast copy.
pub(crate) fn gather(walk: &Walk<1>, x: &[f32], y: &mut [f32]) {
    let [s] = walk.inner_strides();
    for_blocks(y, |start, block| {
        let mut p = 0;
        walk.runs(start, block.len(), |[o], n| {
            let out = &mut block[p..p + n];
            if s == 1 {
                out.copy_from_slice(&x[o..o + n]);
            } else {
                for (i, v) in out.iter_mut().enumerate() {
                    *v = x[o + i * s];
                }
            }
            p += n;
        });
    });
}

/// acc[offset of j] += dy[j] over the whole walk, serially in order: the
/// backward of a gather, summing where several elements read one place.
pub(crate) fn scatter_add(walk: &Walk<1>, dy: &[f32], acc: &mut [f64]) {
    let [s] = walk.inner_strides();
    let mut p = 0;
    walk.runs(0, walk.len(), |[o], n| {
        for (i, &g) in dy[p..p + n].iter().enumerate() {
            acc[o + i * s] += g as f64;
        }
        p += n;
    });
}

/// dx ← acc rounded to f32, after the f64 sums of a backward.
pub(crate) fn store(acc: &[f64], dx: &mut [f32]) {
    for (d, &a) in dx.iter_mut().zip(acc) {
        *d = a as f32;
    }
}

/// `buf` resized to `n` zeros, reusing its allocation.
pub(crate) fn zeroed(buf: &mut Vec<f64>, n: usize) -> &mut [f64] {
    buf.clear();
    buf.resize(n, 0.0);
    &mut buf[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_merge_contiguous_axes_and_split_runs_at_any_start() {
        // (2, 3) + (3,): the second operand repeats along axis 0.
        let w = Walk::<2>::new(&[2, 3], [&[3, 1], &[0, 1]]);
        assert_eq!(w.rank, 2);
        let mut seen = vec![];
        w.runs(1, 4, |off, n| seen.push((off, n)));
        assert_eq!(seen, vec![([1, 1], 2), ([3, 0], 2)]);
        // Contiguous axes merge into one run.
        let w = Walk::<1>::new(&[2, 1, 3, 4], [&[12, 0, 4, 1]]);
        assert_eq!((w.rank, w.len()), (1, 24));
    }
}
