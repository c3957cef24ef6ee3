//! Times the GEMM at the shapes of the dense benchmarks (W1, W2), forward and backward,
//! for the `gemm` crate (what the engine uses) and `matrixmultiply` (the alternative).
//! `cargo run --release -p ferrax-core --example gemm_shapes [NAME-FILTER]`
//! (`MATMUL_NUM_THREADS` sets matrixmultiply's threads; `FERRAX_NUM_THREADS` gemm's.)

use ferrax_core::matmul::Gemm;
use ferrax_core::parallel;
use std::time::Instant;

fn main() {
    let shapes = [
        ("W1 fwd 32x784x128", Gemm::new(32, 784, 128)),
        ("W1 dW 784x32x128 (Aᵀ)", Gemm::new(784, 32, 128).trans_a()),
        ("W1 dX 32x128x784 (Bᵀ)", Gemm::new(32, 128, 784).trans_b()),
        ("W2 fwd 128x784x512", Gemm::new(128, 784, 512)),
        ("W2 fwd 128x512x512", Gemm::new(128, 512, 512)),
        ("W2 dW 512x128x512 (Aᵀ)", Gemm::new(512, 128, 512).trans_a()),
        ("W3 fwd 64x5408x128", Gemm::new(64, 5408, 128)),
        ("W3 dW 5408x64x128 (Aᵀ)", Gemm::new(5408, 64, 128).trans_a()),
        ("W3 dX 64x128x5408 (Bᵀ)", Gemm::new(64, 128, 5408).trans_b()),
        ("W4 fwd 1024x784x128", Gemm::new(1024, 784, 128)),
        ("1024^3", Gemm::new(1024, 1024, 1024)),
    ];
    // An optional argument keeps only the shapes whose name contains it.
    let filter = std::env::args().nth(1).unwrap_or_default();
    parallel::install(|| {
        println!("threads: {}", rayon::current_num_threads());
        for (name, g) in shapes.into_iter().filter(|(n, _)| n.contains(&filter)) {
            let a = vec![0.5f32; g.m * g.k];
            let b = vec![0.25f32; g.k * g.n];
            let mut c = vec![0.0f32; g.m * g.n];
            let flops = 2.0 * (g.m * g.n * g.k) as f64;
            // About half a second per shape and library: short runs drift on a VM.
            let reps = ((5e10 / flops) as usize).clamp(3, 200_000);
            g.run(&a, &b, &mut c, false);
            let t = Instant::now();
            for _ in 0..reps {
                g.run(&a, &b, &mut c, false);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            let (rsa, csa) = if g.trans_a {
                (1, g.m as isize)
            } else {
                (g.k as isize, 1)
            };
            let (rsb, csb) = if g.trans_b {
                (1, g.k as isize)
            } else {
                (g.n as isize, 1)
            };
            let t = Instant::now();
            for _ in 0..reps {
                // SAFETY: strides describe the m×k, k×n and m×n buffers allocated above.
                unsafe {
                    matrixmultiply::sgemm(
                        g.m,
                        g.k,
                        g.n,
                        1.0,
                        a.as_ptr(),
                        rsa,
                        csa,
                        b.as_ptr(),
                        rsb,
                        csb,
                        0.0,
                        c.as_mut_ptr(),
                        g.n as isize,
                        1,
                    );
                }
            }
            let s2 = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{name:28} gemm {:9.1} us {:6.1} GFLOP/s | matrixmultiply {:9.1} us {:6.1} GFLOP/s",
                s * 1e6,
                flops / s / 1e9,
                s2 * 1e6,
                flops / s2 / 1e9
            );
        }
    });
}
