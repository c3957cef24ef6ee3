//! RepeatVector(n): each sample's feature vector (F,) repeated n times into
//! (n, F), as Keras defines it. Backward sums the n repeated rows.

use super::{field, Ctx, Layer};
use crate::error::Result;
use crate::parallel::{for_each_row, PARALLEL_THRESHOLD};
use rayon::prelude::*;
use serde_json::Value;

/// Shapes as Keras prints them, batch axis first: `(None, 3, 4)`.
fn keras_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("(None, {})", dims.join(", "))
}

pub struct RepeatVector {
    n: usize,
    features: usize,
    output_shape: Vec<usize>,
}

impl RepeatVector {
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let n_value = field(config, "n");
        let n = match n_value.as_u64() {
            Some(n) if n > 0 => n as usize,
            _ => {
                crate::bail!("RepeatVector '{name}': 'n' must be a positive integer, got {n_value}")
            }
        };
        let &[features] = input_shape else {
            crate::bail!(
                "RepeatVector '{name}': expects inputs of shape (None, features), got {}",
                keras_shape(input_shape)
            );
        };
        Ok(RepeatVector {
            n,
            features,
            output_shape: vec![n, features],
        })
    }
}

impl Layer for RepeatVector {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, _ctx: &Ctx<'_>) {
        let f = self.features;
        let out = self.n * f;
        for_each_row(&mut y[..rows * out], out, |r, row| {
            let src = &x[r * f..][..f];
            for copy in row.chunks_exact_mut(f) {
                copy.copy_from_slice(src);
            }
        });
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        let Some(dx) = dx else {
            return;
        };
        let f = self.features;
        let out = self.n * f;
        if out == 0 {
            return;
        }
        let dy = &dy[..rows * out];
        // The n rows summed in order, so the result does not depend on the threads.
        let sample = |r: usize, d: &mut [f32]| {
            let mut copies = dy[r * out..][..out].chunks_exact(f);
            d.copy_from_slice(copies.next().expect("n >= 1"));
            for copy in copies {
                for (a, &g) in d.iter_mut().zip(copy) {
                    *a += g;
                }
            }
        };
        let dx = &mut dx[..rows * f];
        // The work is reading dy (n times dx), so dy's size decides.
        if dy.len() >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1 {
            dx.par_chunks_mut(f)
                .enumerate()
                .for_each(|(r, d)| sample(r, d));
        } else {
            dx.chunks_mut(f).enumerate().for_each(|(r, d)| sample(r, d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Ctx<'static> {
        Ctx::for_tests(false)
    }

    /// Forward on x, then backward from dy; returns (y, dx).
    fn run(n: usize, features: usize, rows: usize, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let mut layer = RepeatVector::build("rv", &json!({"n": n}), &[features]).unwrap();
        assert_eq!(layer.output_shape(), &[n, features]);
        let mut y = vec![f32::NAN; rows * n * features];
        layer.forward(x, &mut y, rows, &ctx());
        let mut dy = dy.to_vec();
        let mut dx = vec![f32::NAN; x.len()];
        layer.backward(x, &y, &mut dy, Some(&mut dx), rows);
        (y, dx)
    }

    #[test]
    fn repeats_forward_and_sums_backward() {
        // 2 samples of 3 features, repeated 2 times.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let dy: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let (y, dx) = run(2, 3, 2, &x, &dy);
        assert_eq!(
            y,
            vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(
            dx,
            vec![
                1.0 + 4.0,
                2.0 + 5.0,
                3.0 + 6.0,
                7.0 + 10.0,
                8.0 + 11.0,
                9.0 + 12.0
            ]
        );
    }

    #[test]
    fn large_batches_match_the_naive_loops() {
        // Above the parallel threshold: 64 rows × 8 copies × 70 features.
        let (n, f, rows) = (8, 70, 64);
        assert!(rows * n * f >= PARALLEL_THRESHOLD);
        let x: Vec<f32> = (0..rows * f).map(|i| (i % 97) as f32 - 48.0).collect();
        let dy: Vec<f32> = (0..rows * n * f).map(|i| (i % 13) as f32 * 0.5).collect();
        let (y, dx) = run(n, f, rows, &x, &dy);
        for r in 0..rows {
            for j in 0..f {
                let mut sum = 0.0f32;
                for k in 0..n {
                    let e = (r * n + k) * f + j;
                    assert_eq!(y[e], x[r * f + j]);
                    sum += dy[e];
                }
                assert_eq!(dx[r * f + j], sum);
            }
        }
    }

    #[test]
    fn refuses_bad_n_and_inputs_that_are_not_vectors() {
        let err = RepeatVector::build("rv", &json!({"n": 2}), &[3, 4])
            .err()
            .unwrap();
        assert_eq!(
            err.0,
            "RepeatVector 'rv': expects inputs of shape (None, features), got (None, 3, 4)"
        );
        for bad in [
            json!({"n": 0}),
            json!({"n": -1}),
            json!({"n": 1.5}),
            json!({}),
        ] {
            let err = RepeatVector::build("rv", &bad, &[3]).err().unwrap();
            assert!(
                err.0
                    .starts_with("RepeatVector 'rv': 'n' must be a positive integer"),
                "{}",
                err.0
            );
        }
    }
}
