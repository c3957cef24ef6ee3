//! Permute(dims): reorders each sample's axes, as Keras defines it. `dims` holds
//! 1-based per-sample axes: output axis k is input axis `dims[k]` (Permute((2, 1))
//! transposes a (None, a, b) input to (None, b, a)). Backward applies the inverse
//! permutation to dy.
//!
//! Both directions are gathers through index maps built once at build time.

use super::{field, Ctx, Layer};
use crate::error::Result;
use crate::parallel::for_each_row;
use serde_json::Value;

/// Shapes as Keras prints them, batch axis first: `(None, 3, 4)`.
fn keras_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("(None, {})", dims.join(", "))
}

/// A config value for a message, lists spaced as Python prints them.
fn show(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", items.join(", "))
        }
        v => v.to_string(),
    }
}

pub struct Permute {
    /// For each element of one output sample, the element of the input sample it copies.
    gather: Vec<u32>,
    /// The inverse: for each element of one input sample, where it went in the output.
    scatter: Vec<u32>,
    /// The permutation leaves the memory layout alone (it only moves axes of size 1).
    identity: bool,
    output_shape: Vec<usize>,
}

impl Permute {
    pub fn build(name: &str, config: &Value, input_shape: &[usize]) -> Result<Self> {
        let rank = input_shape.len();
        let dims_value = field(config, "dims");
        let refuse = || {
            let axes: Vec<String> = (1..=rank).map(|a| a.to_string()).collect();
            crate::error::Error(format!(
                "Permute '{name}': 'dims' must be a permutation of the non-batch axes [{}] \
                 of inputs of shape {}, got {}",
                axes.join(", "),
                keras_shape(input_shape),
                show(dims_value)
            ))
        };
        let dims = dims_value.as_array().ok_or_else(refuse)?;
        if dims.len() != rank {
            return Err(refuse());
        }
        // 0-based: output axis k is input axis perm[k].
        let mut perm = Vec::with_capacity(rank);
        let mut seen = vec![false; rank];
        for d in dims {
            match d.as_u64().map(|d| d as usize) {
                Some(d) if (1..=rank).contains(&d) && !seen[d - 1] => {
                    seen[d - 1] = true;
                    perm.push(d - 1);
                }
                _ => return Err(refuse()),
            }
        }
        let output_shape: Vec<usize> = perm.iter().map(|&a| input_shape[a]).collect();
        let total: usize = input_shape.iter().product();
        if u32::try_from(total).is_err() {
            crate::bail!(
                "Permute '{name}': inputs of shape {} are too large ({total} values a sample)",
                keras_shape(input_shape)
            );
        }
        // Row-major strides of the input, then the input stride of each output axis.
        let mut in_strides = vec![1usize; rank];
        for a in (0..rank.saturating_sub(1)).rev() {
            in_strides[a] = in_strides[a + 1] * input_shape[a + 1];
        }
        let strides: Vec<usize> = perm.iter().map(|&a| in_strides[a]).collect();
        let mut gather = Vec::with_capacity(total);
        let mut index = vec![0usize; rank];
        let mut at = 0usize;
        for _ in 0..total {
            gather.push(at as u32);
            // Next output multi-index (row-major), keeping `at` in step with it.
            for k in (0..rank).rev() {
                index[k] += 1;
                at += strides[k];
                if index[k] < output_shape[k] {
                    break;
                }
                at -= strides[k] * index[k];
                index[k] = 0;
            }
        }
        let mut scatter = vec![0u32; total];
        for (j, &i) in gather.iter().enumerate() {
            scatter[i as usize] = j as u32;
        }
        let identity = gather.iter().enumerate().all(|(j, &i)| i as usize == j);
        Ok(Permute {
            gather,
            scatter,
            identity,
            output_shape,
        })
    }
}

/// `to[r][j] = from[r][map[j]]` for each of `rows` samples, in parallel above
/// the threshold.
fn gather_rows(map: &[u32], identity: bool, from: &[f32], to: &mut [f32], rows: usize) {
    let len = map.len();
    let (from, to) = (&from[..rows * len], &mut to[..rows * len]);
    if identity {
        to.copy_from_slice(from);
        return;
    }
    for_each_row(to, len, |r, row| {
        let src = &from[r * len..][..len];
        for (v, &i) in row.iter_mut().zip(map) {
            *v = src[i as usize];
        }
    });
}

impl Layer for Permute {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], rows: usize, _ctx: &Ctx<'_>) {
        gather_rows(&self.gather, self.identity, x, y, rows);
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        if let Some(dx) = dx {
            gather_rows(&self.scatter, self.identity, dy, dx, rows);
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

    /// The naive definition, written as a scatter: input element at multi-index
    /// `i` goes to the output multi-index `o` with `o[k] = i[perm[k]]` (0-based perm).
    fn naive(shape: &[usize], perm: &[usize], x: &[f32], rows: usize) -> Vec<f32> {
        let len: usize = shape.iter().product();
        let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
        let mut y = vec![f32::NAN; x.len()];
        for r in 0..rows {
            for flat in 0..len {
                let mut rest = flat;
                let mut i = vec![0; shape.len()];
                for a in (0..shape.len()).rev() {
                    i[a] = rest % shape[a];
                    rest /= shape[a];
                }
                let mut o_flat = 0;
                for (k, &a) in perm.iter().enumerate() {
                    o_flat = o_flat * out_shape[k] + i[a];
                }
                y[r * len + o_flat] = x[r * len + flat];
            }
        }
        y
    }

    /// Forward on x, then backward from dy; returns (layer, y, dx).
    fn run(
        shape: &[usize],
        dims: &[usize],
        x: &[f32],
        dy: &[f32],
        rows: usize,
    ) -> (Permute, Vec<f32>, Vec<f32>) {
        let mut layer = Permute::build("p", &json!({ "dims": dims }), shape).unwrap();
        let mut y = vec![f32::NAN; x.len()];
        layer.forward(x, &mut y, rows, &ctx());
        let mut dy = dy.to_vec();
        let mut dx = vec![f32::NAN; x.len()];
        layer.backward(x, &y, &mut dy, Some(&mut dx), rows);
        (layer, y, dx)
    }

    #[test]
    fn swaps_two_axes_by_hand() {
        // One sample of shape (2, 3): [[1, 2, 3], [4, 5, 6]] -> [[1, 4], [2, 5], [3, 6]].
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let dy = [10.0, 40.0, 20.0, 50.0, 30.0, 60.0];
        let (layer, y, dx) = run(&[2, 3], &[2, 1], &x, &dy, 1);
        assert_eq!(layer.output_shape(), &[3, 2]);
        assert_eq!(y, vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(dx, vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
    }

    #[test]
    fn every_permutation_of_three_axes_matches_the_naive_definition() {
        let shape = [2, 3, 4];
        let rows = 3;
        let x: Vec<f32> = (0..rows * 24).map(|v| v as f32).collect();
        let dy: Vec<f32> = (0..rows * 24).map(|v| (v * 7 % 11) as f32 - 5.0).collect();
        for perm in [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let dims: Vec<usize> = perm.iter().map(|a| a + 1).collect();
            let (layer, y, dx) = run(&shape, &dims, &x, &dy, rows);
            let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
            assert_eq!(layer.output_shape(), out_shape.as_slice());
            assert_eq!(y, naive(&shape, &perm, &x, rows), "forward, dims {dims:?}");
            // dx is dy put back through the inverse permutation...
            let mut inverse = [0; 3];
            for (k, &a) in perm.iter().enumerate() {
                inverse[a] = k;
            }
            assert_eq!(
                dx,
                naive(&out_shape, &inverse, &dy, rows),
                "backward, dims {dims:?}"
            );
            // ...which is the gradient of sum(y * dy): sum(x * dx) equals it.
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f32>();
            assert_eq!(dot(&y, &dy), dot(&x, &dx));
        }
    }

    #[test]
    fn large_batches_and_size_one_axes() {
        // Above the parallel threshold: 40 rows of (16, 8, 8).
        let shape = [16, 8, 8];
        let rows = 40;
        assert!(rows * 1024 >= crate::parallel::PARALLEL_THRESHOLD);
        let x: Vec<f32> = (0..rows * 1024).map(|v| (v % 1009) as f32).collect();
        let dy: Vec<f32> = (0..rows * 1024).map(|v| (v % 31) as f32).collect();
        let (_, y, dx) = run(&shape, &[3, 1, 2], &x, &dy, rows);
        assert_eq!(y, naive(&shape, &[2, 0, 1], &x, rows));
        assert_eq!(dx, naive(&[8, 16, 8], &[1, 2, 0], &dy, rows));
        // Moving an axis of size 1 keeps the layout: a copy.
        let (layer, y, dx) = run(&[1, 5], &[2, 1], &x[..10], &dy[..10], 2);
        assert!(layer.identity);
        assert_eq!((y.as_slice(), dx.as_slice()), (&x[..10], &dy[..10]));
    }

    #[test]
    fn refuses_dims_that_are_not_a_permutation_of_the_axes() {
        for bad in [
            json!([1, 1]),
            json!([1, 3]),
            json!([0, 1]),
            json!([1]),
            json!([1, 2, 3]),
        ] {
            let err = Permute::build("perm", &json!({ "dims": bad }), &[3, 4])
                .err()
                .unwrap();
            assert_eq!(
                err.0,
                format!(
                    "Permute 'perm': 'dims' must be a permutation of the non-batch axes [1, 2] \
                     of inputs of shape (None, 3, 4), got {}",
                    show(&bad)
                )
            );
        }
        let err = Permute::build("perm", &json!({}), &[3]).err().unwrap();
        assert!(
            err.0.starts_with("Permute 'perm': 'dims' must be") && err.0.ends_with("got null"),
            "{}",
            err.0
        );
        assert_eq!(show(&json!([2, 1])), "[2, 1]");
    }
}
