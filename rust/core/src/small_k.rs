//! C = A·B when the shared dimension k is tiny (a 3×3 convolution over one or
//! a few channels has k = 9..27): general GEMM kernels pack and tile for long
//! k and waste most of their time here. Each output row is k broadcasts times
//! one row of B, accumulated in a register-sized buffer, then handed to an
//! epilogue (bias, activation) while still in L1, so the layer's output is
//! written once. Rows are independent and blocked by shape alone, so results
//! are the same for any thread count. Products accumulate with fused
//! multiply-adds (`mul_add`, exactly rounded): the AVX2+FMA build and the
//! baseline build give the same bits.

use crate::parallel::PARALLEL_THRESHOLD;
use rayon::prelude::*;

/// The widest k and n this kernel takes (its accumulator lives on the stack).
pub const MAX_K: usize = 32;
pub const MAX_N: usize = 256;

/// Rows per parallel task.
const ROWS_PER_TASK: usize = 256;

/// out (m × n) = a (m × k) · b (k × n), then `epilogue` on each output row.
pub fn product(
    a: &[f32],
    b: &[f32],
    k: usize,
    n: usize,
    out: &mut [f32],
    epilogue: impl Fn(&mut [f32]) + Sync,
) {
    assert!(
        k <= MAX_K && n <= MAX_N && k > 0 && n > 0,
        "small_k: k={k}, n={n}"
    );
    let m = out.len() / n;
    assert!(
        a.len() >= m * k && b.len() >= k * n,
        "small_k: operand sizes"
    );
    let task = |(t, rows): (usize, &mut [f32])| {
        let a = &a[t * ROWS_PER_TASK * k..];
        rows_dispatch(a, b, k, n, rows, &epilogue);
    };
    if out.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(ROWS_PER_TASK * n)
            .enumerate()
            .for_each(task);
    } else {
        out.chunks_mut(ROWS_PER_TASK * n).enumerate().for_each(task);
    }
}

/// The same product on the calling thread, for callers that already run one task per
/// block of rows.
pub fn product_serial(
    a: &[f32],
    b: &[f32],
    k: usize,
    n: usize,
    out: &mut [f32],
    epilogue: impl Fn(&mut [f32]),
) {
    assert!(
        k <= MAX_K && n <= MAX_N && k > 0 && n > 0,
        "small_k: k={k}, n={n}"
    );
    assert!(
        a.len() >= out.len() / n * k && b.len() >= k * n,
        "small_k: operand sizes"
    );
    rows_dispatch(a, b, k, n, out, &epilogue);
}

fn rows_dispatch(
    a: &[f32],
    b: &[f32],
    k: usize,
    n: usize,
    out: &mut [f32],
    epilogue: &impl Fn(&mut [f32]),
) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the wide version is compiled for.
            return unsafe { rows_avx2(a, b, k, n, out, epilogue) };
        }
    }
    rows_generic(a, b, k, n, out, epilogue)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(
    a: &[f32],
    b: &[f32],
    k: usize,
    n: usize,
    out: &mut [f32],
    epilogue: &impl Fn(&mut [f32]),
) {
    rows_generic(a, b, k, n, out, epilogue)
}

/// Common widths get an accumulator of fixed size that stays in registers.
#[inline(always)]
fn rows_generic(
    a: &[f32],
    b: &[f32],
    k: usize,
    n: usize,
    out: &mut [f32],
    epilogue: &impl Fn(&mut [f32]),
) {
    match n {
        8 => rows_fixed::<8>(a, b, k, out, epilogue),
        16 => rows_fixed::<16>(a, b, k, out, epilogue),
        32 => rows_fixed::<32>(a, b, k, out, epilogue),
        64 => rows_fixed::<64>(a, b, k, out, epilogue),
        _ => rows_any(a, b, k, n, out, epilogue),
    }
}

#[inline(always)]
fn rows_fixed<const N: usize>(
    a: &[f32],
    b: &[f32],
    k: usize,
    out: &mut [f32],
    epilogue: &impl Fn(&mut [f32]),
) {
    let b = &b[..k * N];
    for (row, a_row) in out.chunks_exact_mut(N).zip(a.chunks_exact(k)) {
        let mut acc = [0.0f32; N];
        for (&av, b_row) in a_row.iter().zip(b.chunks_exact(N)) {
            for (c, &bv) in acc.iter_mut().zip(b_row) {
                *c = av.mul_add(bv, *c);
            }
        }
        row.copy_from_slice(&acc);
        epilogue(row);
    }
}

#[inline(always)]
fn rows_any(
    a: &[f32],
    b: &[f32],
    k: usize,
    n: usize,
    out: &mut [f32],
    epilogue: &impl Fn(&mut [f32]),
) {
    let b = &b[..k * n];
    for (row, a_row) in out.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
        let mut acc = [0.0f32; MAX_N];
        let acc = &mut acc[..n];
        for (&av, b_row) in a_row.iter().zip(b.chunks_exact(n)) {
            for (c, &bv) in acc.iter_mut().zip(b_row) {
                *c = av.mul_add(bv, *c);
            }
        }
        row.copy_from_slice(acc);
        epilogue(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Key;

    #[test]
    fn matches_a_naive_product_and_runs_the_epilogue_on_every_row() {
        let key = Key::new(7);
        for &(m, k, n) in &[(1, 1, 1), (300, 9, 32), (700, 27, 5), (3, 32, 256)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| key.uniform_f32(i as u64) - 0.5)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| key.fold(1).uniform_f32(i as u64) - 0.5)
                .collect();
            let mut out = vec![f32::NAN; m * n];
            product(&a, &b, k, n, &mut out, |row| {
                row.iter_mut().for_each(|v| *v += 1.0)
            });
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k)
                        .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                        .sum::<f64>()
                        + 1.0;
                    let got = out[i * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "({m},{k},{n}) [{i},{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
