//! Matrix multiplication through the `gemm` crate (runtime CPU dispatch, rayon).
//!
//! All matrices are row-major slices. `trans_a` / `trans_b` say that the stored
//! matrix is the transpose of the logical operand, so backward passes
//! (dX = dY·Wᵀ, dW = Xᵀ·dY) need no transposed copies.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// One kernel call does at most this many multiply-adds (unless that is fewer
/// than `MIN_CALL_ROWS` rows): about 10-50 ms on one core, so that Ctrl-C is seen
/// within a huge product; repacking B once per call costs ~1/rows of the work.
const CALL_FLOPS: usize = 1 << 30;
const MIN_CALL_ROWS: usize = 64;

/// Products smaller than this many multiply-adds run on one thread.
pub const PARALLEL_FLOPS: usize = 1 << 18;

/// Shapes of one product: C (m×n) = op(A) (m×k) · op(B) (k×n).
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Gemm {
    pub fn new(m: usize, k: usize, n: usize) -> Self {
        Gemm {
            m,
            k,
            n,
            trans_a: false,
            trans_b: false,
        }
    }

    pub fn trans_a(mut self) -> Self {
        self.trans_a = true;
        self
    }

    pub fn trans_b(mut self) -> Self {
        self.trans_b = true;
        self
    }

    /// C = op(A)·op(B), or C += op(A)·op(B) when `accumulate`.
    pub fn run(self, a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool) {
        let Gemm {
            m,
            k,
            n,
            trans_a,
            trans_b,
        } = self;
        assert!(
            a.len() >= m * k,
            "matmul: lhs has {} elements, needs {}",
            a.len(),
            m * k
        );
        assert!(
            b.len() >= k * n,
            "matmul: rhs has {} elements, needs {}",
            b.len(),
            k * n
        );
        assert!(
            c.len() >= m * n,
            "matmul: dst has {} elements, needs {}",
            c.len(),
            m * n
        );
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                c[..m * n].fill(0.0);
            }
            return;
        }
        // A short k (a Dense kernel gradient at a small batch): no packing.
        if trans_a && !trans_b && crate::short_k::applies(m, k, n) {
            crate::short_k::product_trans_a((m, k, n), a, b, c, accumulate);
            return;
        }
        // A small C over a long k (the kernel gradient Xᵀ·dY of a small convolution):
        // cut k instead, into chunks fixed by the shape alone, and add the partial
        // products in chunk order. Both operands' k-ranges are then contiguous rows.
        if trans_a
            && !trans_b
            && m.max(n) <= MIN_BLOCK
            && m * n * k >= PARALLEL_FLOPS
            && k >= 2 * MIN_K_CHUNK
        {
            let chunk = MIN_K_CHUNK.max(k.div_ceil(MAX_BLOCKS));
            let mut partials = vec![0.0f32; k.div_ceil(chunk) * m * n];
            partials
                .par_chunks_mut(m * n)
                .enumerate()
                .for_each(|(i, part)| {
                    let (p0, p1) = (i * chunk, ((i + 1) * chunk).min(k));
                    let sub = Gemm { k: p1 - p0, ..self };
                    sub.run_serial(&a[p0 * m..p1 * m], &b[p0 * n..p1 * n], part, false);
                });
            if !accumulate {
                c[..m * n].fill(0.0);
            }
            for part in partials.chunks(m * n) {
                for (cv, &pv) in c.iter_mut().zip(part) {
                    *cv += pv;
                }
            }
            return;
        }
        self.run_blocks(a, b, c, accumulate, true);
    }

    /// The whole product in one kernel call on this thread.
    fn run_serial(self, a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool) {
        self.run_blocks(a, b, c, accumulate, false);
    }

    /// C (or C +=) op(A)·op(B), split into blocks of C run in parallel when `parallel`
    /// and the product is big enough. Sizes were checked by `run`.
    fn run_blocks(self, a: &[f32], b: &[f32], c: &mut [f32], accumulate: bool, parallel: bool) {
        let Gemm {
            m,
            k,
            n,
            trans_a,
            trans_b,
        } = self;
        let (a_rs, a_cs) = if trans_a {
            (1, m as isize)
        } else {
            (k as isize, 1)
        };
        let (b_rs, b_cs) = if trans_b {
            (1, k as isize)
        } else {
            (n as isize, 1)
        };
        let (a, b, c) = (
            SendPtr(a.as_ptr() as *mut f32),
            SendPtr(b.as_ptr() as *mut f32),
            SendPtr(c.as_mut_ptr()),
        );
        // One block of output rows [i0, i1) and columns [j0, j1) of C, in kernel
        // calls of at most CALL_FLOPS (rows fixed by the shape: reproducible), with
        // a poll for Ctrl-C before each (a huge product answers within ~50 ms).
        let block = |(i0, i1): (usize, usize), (j0, j1): (usize, usize)| {
            let step = (CALL_FLOPS / (k * (j1 - j0)).max(1)).max(MIN_CALL_ROWS);
            let mut r0 = i0;
            while r0 < i1 {
                if crate::interrupt::poll() {
                    return; // (the call fails: C's values do not matter)
                }
                let r1 = (r0 + step).min(i1);
                // SAFETY: the asserts above bound every index gemm touches: the
                // strides describe the m×k, k×n and m×n row-major buffers, and blocks
                // of C are disjoint, so concurrent blocks never write the same element.
                unsafe {
                    gemm(
                        r1 - r0,
                        j1 - j0,
                        k,
                        c.get().add(r0 * n + j0),
                        1,
                        n as isize,
                        accumulate,
                        a.get().offset(r0 as isize * a_rs),
                        a_cs,
                        a_rs,
                        b.get().offset(j0 as isize * b_cs),
                        b_cs,
                        b_rs,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
                r0 = r1;
            }
        };
        let big = m.max(n);
        if !parallel || m * n * k < PARALLEL_FLOPS || big <= MIN_BLOCK {
            block((0, m), (0, n));
            return;
        }
        // Blocks of C chosen from the shape alone, never from the thread count, so
        // every element comes from the same kernel call whatever the pool size:
        // results are bitwise reproducible.
        let (rows, cols) = block_grid(m, n);
        let (row_size, col_size) = (m.div_ceil(rows), n.div_ceil(cols));
        let span = |i: usize, size: usize, len: usize| (i * size, ((i + 1) * size).min(len));
        (0..rows * cols)
            .into_par_iter()
            .for_each(|t| block(span(t / cols, row_size, m), span(t % cols, col_size, n)));
    }
}

/// How a parallel product's C (m×n) is cut: `(row blocks, column blocks)`.
///
/// The longer side alone fixes how many blocks there are (at most `MAX_BLOCKS`,
/// each at least `MIN_BLOCK` long). Each block packs its own rows of A and
/// columns of B, so packing work is proportional to
/// `column_blocks·m + row_blocks·n`; the grid with that count of blocks which
/// packs least wins, ties going to more column blocks. A square 1024² output is
/// cut 2×4 rather than into 8 strips that each pack all of B again.
pub fn block_grid(m: usize, n: usize) -> (usize, usize) {
    let big = m.max(n);
    let size = MIN_BLOCK.max(big.div_ceil(MAX_BLOCKS));
    let blocks = big.div_ceil(size);
    let strips = if m >= n { (blocks, 1) } else { (1, blocks) };
    let packing = |(r, c): (usize, usize)| c * m + r * n;
    (1..=blocks)
        .filter(|r| blocks.is_multiple_of(*r))
        .map(|r| (r, blocks / r))
        .filter(|&(r, c)| m / r >= MIN_BLOCK && n / c >= MIN_BLOCK)
        .fold(strips, |best, g| {
            let better =
                packing(g) < packing(best) || (packing(g) == packing(best) && g.1 > best.1);
            if better {
                g
            } else {
                best
            }
        })
}

/// Parallel products are cut into at most this many blocks along their longer side...
const MAX_BLOCKS: usize = 8;
/// ...of at least this many rows or columns.
const MIN_BLOCK: usize = 64;
/// Split-k chunks are at least this long.
const MIN_K_CHUNK: usize = 2048;

/// A raw pointer that may cross threads; users guarantee disjoint writes.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used for the disjoint blocks of C above.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Key;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let k = Key::new(seed);
        (0..n).map(|i| k.uniform_f32(i as u64) - 0.5).collect()
    }

    fn naive(a: &[f32], b: &[f32], g: Gemm) -> Vec<f64> {
        let mut c = vec![0.0f64; g.m * g.n];
        for i in 0..g.m {
            for j in 0..g.n {
                for p in 0..g.k {
                    let av = if g.trans_a {
                        a[p * g.m + i]
                    } else {
                        a[i * g.k + p]
                    };
                    let bv = if g.trans_b {
                        b[j * g.k + p]
                    } else {
                        b[p * g.n + j]
                    };
                    c[i * g.n + j] += av as f64 * bv as f64;
                }
            }
        }
        c
    }

    #[test]
    fn all_transpose_combinations_match_naive() {
        // (9, 20000, 32) takes the split-k path when A is transposed.
        for &(m, k, n) in &[
            (3, 5, 7),
            (32, 78, 13),
            (1, 1, 1),
            (70, 130, 90),
            (9, 20000, 32),
            (600, 300, 600),
        ] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let g = Gemm {
                        m,
                        k,
                        n,
                        trans_a: ta,
                        trans_b: tb,
                    };
                    let a = random(m * k, 1);
                    let b = random(k * n, 2);
                    let mut c = vec![1.0f32; m * n];
                    g.run(&a, &b, &mut c, true);
                    let want = naive(&a, &b, g);
                    for (x, y) in c.iter().zip(&want) {
                        let tol = 1e-4 * (1.0 + y.abs());
                        assert!((*x as f64 - (y + 1.0)).abs() < tol, "{x} vs {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn square_outputs_are_cut_into_a_grid_and_layer_shapes_into_strips() {
        // 8 blocks either way; a 2x4 grid packs 4·1024 + 2·1024 against 8 strips' 1024 + 8·1024.
        assert_eq!(block_grid(1024, 1024), (2, 4));
        assert_eq!(block_grid(600, 600), (2, 4));
        // Where strips pack no more than any grid, they stay.
        assert_eq!(block_grid(784, 128), (8, 1)); // W1 dW
        assert_eq!(block_grid(32, 128), (1, 2)); // W1 forward
        assert_eq!(block_grid(128, 512), (1, 8)); // W2 forward: (2, 4) only ties
        assert_eq!(block_grid(1024, 128), (8, 1)); // W4
        assert_eq!(block_grid(5408, 128), (8, 1)); // W3 dW

        // A side too short for two blocks is never cut.
        assert_eq!(block_grid(100, 1024), (1, 8));
    }

    /// Determinism rests on this: the same product is bitwise the same whatever
    /// the number of threads the pool has.
    #[test]
    fn thread_count_does_not_change_bits() {
        for &(m, k, n) in &[
            (9, 43264, 32),
            (32, 784, 128),
            (128, 784, 512),
            (784, 32, 128),
            (300, 301, 302),
            (600, 300, 600),
        ] {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let g = Gemm {
                    m,
                    k,
                    n,
                    trans_a: ta,
                    trans_b: tb,
                };
                let a = random(m * k, 3);
                let b = random(k * n, 4);
                let run = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut c = vec![0.0f32; m * n];
                    pool.install(|| g.run(&a, &b, &mut c, false));
                    c
                };
                let one = run(1);
                assert_eq!(one, run(2), "{g:?}");
                assert_eq!(one, run(3), "{g:?}");
            }
        }
    }
}
