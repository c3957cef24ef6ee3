//! C = Aᵀ·B when the shared dimension k is short: the kernel gradient
//! dW = Xᵀ·dY of a Dense layer at a small batch (Keras's default batch of 32
//! gives k = 32). General GEMM kernels pack both operands and tile for long k;
//! with k this short the packing and the per-call set-up cost a fifth of the
//! product. Here each 4×16 tile of C is accumulated in registers straight from
//! the operands (a row of B is 16 contiguous values, the four values of A it
//! meets are contiguous too, as A is stored transposed), then written once.
//!
//! Every element is one chain of fused multiply-adds over p = 0..k in order,
//! whichever tile shape, block or thread computes it: results do not depend on
//! the thread count, and the AVX2+FMA build and the baseline build (`mul_add`,
//! exactly rounded) give the same bits.

use rayon::prelude::*;

/// The longest k this kernel takes; longer products go to the general GEMM.
pub const MAX_K: usize = 32;

/// Whether `trans_a` products of this shape (A stored k×m, B stored k×n, both
/// row-major) go here: k short, whole 8-wide column panels, and a CPU that
/// multiplies-adds in one instruction (elsewhere `mul_add` is a slow library
/// call, and the general GEMM is the better choice).
pub fn applies(m: usize, k: usize, n: usize) -> bool {
    k > 0 && k <= MAX_K && m > 0 && n >= 8 && n.is_multiple_of(8) && fused_multiply_add()
}

fn fused_multiply_add() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(target_arch = "aarch64")]
    return true;
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return false;
}

/// C (m×n) = Aᵀ·B, or C += Aᵀ·B when `accumulate`, with `a` k×m and `b` k×n.
/// Rows of C are cut into strips fixed by the shape alone (`strip_rows`), run on
/// the pool when the product is big enough.
pub fn product_trans_a(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    accumulate: bool,
) {
    assert!(applies(m, k, n), "short_k: m={m}, k={k}, n={n}");
    assert!(
        a.len() >= k * m && b.len() >= k * n && c.len() >= m * n,
        "short_k: operand sizes"
    );
    let rows = strip_rows(m);
    let operands = Operands { a, m, b, n, k };
    let strip = |(s, c_strip): (usize, &mut [f32])| {
        strip_dispatch(&operands, s * rows, c_strip, accumulate);
    };
    let c = &mut c[..m * n];
    let parallel = m * n * k >= crate::matmul::PARALLEL_FLOPS && rayon::current_num_threads() > 1;
    if parallel && rows < m {
        c.par_chunks_mut(rows * n).enumerate().for_each(strip);
    } else {
        c.chunks_mut(rows * n).enumerate().for_each(strip);
    }
}

/// Rows per strip: at most 8 strips of at least 64 rows, a whole number of tiles.
fn strip_rows(m: usize) -> usize {
    const MAX_STRIPS: usize = 8;
    const MIN_ROWS: usize = 64;
    MIN_ROWS
        .max(m.div_ceil(MAX_STRIPS))
        .next_multiple_of(TILE_ROWS)
}

const TILE_ROWS: usize = 4;

/// Rows of C from `row0`, as many as `c` holds, on the widest code this CPU runs.
fn strip_dispatch(o: &Operands, row0: usize, c: &mut [f32], accumulate: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if fused_multiply_add() {
            // SAFETY: the CPU supports the features the wide version is compiled for.
            return unsafe { strip_avx2(o, row0, c, accumulate) };
        }
    }
    strip_generic(o, row0, c, accumulate)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn strip_avx2(o: &Operands, row0: usize, c: &mut [f32], accumulate: bool) {
    sweep(o.n, c.len() / o.n, |at, rows, wide| {
        // SAFETY: `sweep` keeps every tile inside the strip, and the strip inside C
        // (m×n); `product_trans_a` checked that A (k×m) and B (k×n) are that large.
        unsafe {
            match (rows, wide) {
                (4, true) => avx2::tile::<4, 2>(o, row0, at, c, accumulate),
                (4, false) => avx2::tile::<4, 1>(o, row0, at, c, accumulate),
                (_, true) => avx2::tile::<1, 2>(o, row0, at, c, accumulate),
                (_, false) => avx2::tile::<1, 1>(o, row0, at, c, accumulate),
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Operands, Tile};
    use std::arch::x86_64::*;

    /// One R-row tile of V vectors of 8 columns: R·V accumulators in registers.
    ///
    /// # Safety
    /// AVX2 and FMA must be available, and the tile must lie inside C and the operands.
    #[inline(always)]
    pub(super) unsafe fn tile<const R: usize, const V: usize>(
        o: &Operands,
        row0: usize,
        at: Tile,
        c: &mut [f32],
        accumulate: bool,
    ) {
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); V]; R];
            let (a, b) = (o.a.as_ptr().add(row0 + at.row), o.b.as_ptr().add(at.col));
            for p in 0..o.k {
                let a_row = a.add(p * o.m);
                let b_row = b.add(p * o.n);
                let mut bv = [_mm256_setzero_ps(); V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(b_row.add(8 * v));
                }
                for (r, acc_row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a_row.add(r));
                    for (x, &bx) in acc_row.iter_mut().zip(&bv) {
                        *x = _mm256_fmadd_ps(av, bx, *x);
                    }
                }
            }
            let out = c.as_mut_ptr().add(at.row * o.n + at.col);
            for (r, acc_row) in acc.iter().enumerate() {
                for (v, &x) in acc_row.iter().enumerate() {
                    let dst = out.add(r * o.n + 8 * v);
                    let x = if accumulate {
                        _mm256_add_ps(_mm256_loadu_ps(dst), x)
                    } else {
                        x
                    };
                    _mm256_storeu_ps(dst, x);
                }
            }
        }
    }
}

/// Visits the tiles of a strip of `rows` rows: 16-wide column panels (an 8-wide
/// one last when n is an odd multiple of 8), each swept by 4-row tiles and
/// single-row tiles for the strip's last rows. A panel of B (k×16) stays in L1
/// while the tiles go down it. `f(tile, tile rows, 16 wide)`.
#[inline(always)]
fn sweep(n: usize, rows: usize, mut f: impl FnMut(Tile, usize, bool)) {
    let mut j = 0;
    while j < n {
        let wide = n - j >= 16;
        let mut i = 0;
        while i < rows {
            let tile_rows = if rows - i >= TILE_ROWS { TILE_ROWS } else { 1 };
            f(Tile { row: i, col: j }, tile_rows, wide);
            i += tile_rows;
        }
        j += if wide { 16 } else { 8 };
    }
}

/// The same strip in portable code (`mul_add` in the same order as the AVX2 tiles).
fn strip_generic(o: &Operands, row0: usize, c: &mut [f32], accumulate: bool) {
    sweep(o.n, c.len() / o.n, |at, rows, wide| match (rows, wide) {
        (4, true) => tile::<4, 16>(o, row0, at, c, accumulate),
        (4, false) => tile::<4, 8>(o, row0, at, c, accumulate),
        (_, true) => tile::<1, 16>(o, row0, at, c, accumulate),
        (_, false) => tile::<1, 8>(o, row0, at, c, accumulate),
    });
}

/// A (k×m) and B (k×n) of a product Aᵀ·B, both row-major.
struct Operands<'a> {
    a: &'a [f32],
    m: usize,
    b: &'a [f32],
    n: usize,
    k: usize,
}

/// Where a tile sits: its first row (in the strip) and its first column.
#[derive(Clone, Copy)]
struct Tile {
    row: usize,
    col: usize,
}

/// One R×W tile of C: W accumulators per row, kept in registers over the k loop.
fn tile<const R: usize, const W: usize>(
    o: &Operands,
    row0: usize,
    at: Tile,
    c: &mut [f32],
    accumulate: bool,
) {
    let mut acc = [[0.0f32; W]; R];
    for p in 0..o.k {
        let a_vals = &o.a[p * o.m + row0 + at.row..][..R];
        let b_vals = &o.b[p * o.n + at.col..][..W];
        for (acc_row, &av) in acc.iter_mut().zip(a_vals) {
            for (cv, &bv) in acc_row.iter_mut().zip(b_vals) {
                *cv = av.mul_add(bv, *cv);
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let out = &mut c[(at.row + r) * o.n + at.col..][..W];
        if accumulate {
            out.iter_mut().zip(acc_row).for_each(|(o, &v)| *o += v);
        } else {
            out.copy_from_slice(acc_row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Key;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let key = Key::new(seed);
        (0..n).map(|i| key.uniform_f32(i as u64) - 0.5).collect()
    }

    /// Aᵀ·B in f64 by definition, with a stored k×m.
    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|p| a[p * m + i] as f64 * b[p * n + j] as f64)
                    .sum();
            }
        }
        c
    }

    #[test]
    fn matches_the_definition_at_every_tile_shape_and_strip_edge() {
        // Column counts that end on a 16- and an 8-wide panel; row counts that leave
        // single-row tiles inside and at the end of strips; k from 1 to the limit;
        // (784, 32, 128), W1's kernel gradient, runs in parallel strips.
        for &(m, k, n) in &[
            (1, 1, 8),
            (3, 5, 24),
            (784, 32, 128),
            (203, 17, 40),
            (70, 32, 16),
        ] {
            for accumulate in [false, true] {
                {
                    let a = random(k * m, 1);
                    let b = random(k * n, 2);
                    let mut c = vec![0.25f32; m * n];
                    product_trans_a((m, k, n), &a, &b, &mut c, accumulate);
                    let start = if accumulate { 0.25 } else { 0.0 };
                    for (idx, (got, want)) in c.iter().zip(naive(&a, &b, m, k, n)).enumerate() {
                        let want = want + start;
                        assert!(
                            (*got as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                            "({m},{k},{n}) element {idx}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_wide_build_and_the_baseline_build_give_the_same_bits() {
        let (m, k, n) = (203, 32, 40);
        let a = random(k * m, 3);
        let b = random(k * n, 4);
        let mut dispatched = vec![0.0f32; m * n];
        product_trans_a((m, k, n), &a, &b, &mut dispatched, false);
        let mut baseline = vec![0.0f32; m * n];
        let operands = Operands {
            a: &a,
            m,
            b: &b,
            n,
            k,
        };
        strip_generic(&operands, 0, &mut baseline, false);
        assert_eq!(dispatched, baseline);
    }
}
