//! Dot: the per-sample dot product of two inputs along one axis of each, like a
//! batched tensordot (Keras's `batch_dot`). The output per sample is the
//! remaining axes of the first input followed by the remaining axes of the
//! second; two vectors give `(1,)`.
//!
//! With `normalize`, each input is first L2-normalised along its summed axis,
//! `x / sqrt(max(Σx², ε))`, so the product is the cosine similarity.
//!
//! Each input is seen as `(pre, n, post)` around its summed axis of size `n`;
//! its remaining elements are indexed `i = p·post + q` (`m = pre·post` of
//! them), and `y[i1·m2 + i2] = Σ_k x1[p1, k, q1] · x2[p2, k, q2]`.

use super::{field, Ctx, Layer};
use crate::error::{Error, Result};
use crate::parallel::PARALLEL_THRESHOLD;
use rayon::prelude::*;
use serde_json::Value;

/// The floor of the squared norm, as in Keras's `l2_normalize`.
const EPSILON: f64 = 1e-12;

/// One input seen around its summed axis.
#[derive(Clone, Copy, Debug)]
struct Side {
    /// Elements per sample.
    len: usize,
    /// Product of the sizes before the summed axis.
    pre: usize,
    /// Product of the sizes after the summed axis (the summed axis's stride).
    post: usize,
    /// Remaining elements per sample: `pre · post`.
    m: usize,
}

impl Side {
    fn new(shape: &[usize], axis: usize) -> Self {
        let pre = shape[..axis].iter().product();
        let post = shape[axis + 1..].iter().product();
        Side {
            len: shape.iter().product(),
            pre,
            post,
            m: pre * post,
        }
    }

    /// Where each remaining element starts in one sample, in order (then the
    /// summed axis steps by `post`).
    fn bases(self, n: usize) -> impl Iterator<Item = usize> {
        (0..self.pre).flat_map(move |p| (0..self.post).map(move |q| p * n * self.post + q))
    }
}

/// The L2 norm of one remaining element along the summed axis, for `normalize`.
#[derive(Clone, Copy, Debug, Default)]
struct Norm {
    /// `1 / sqrt(max(Σx², ε))`.
    inv: f64,
    /// Σx² < ε: the norm is the constant floor, so the gradient ignores it.
    floor: bool,
}

impl Norm {
    fn of(sum_sq: f64) -> Self {
        if sum_sq >= EPSILON {
            Norm {
                inv: 1.0 / sum_sq.sqrt(),
                floor: false,
            }
        } else {
            Norm {
                inv: 1.0 / EPSILON.sqrt(),
                floor: true,
            }
        }
    }
}

/// The inverse norm of remaining element `i` in one sample's norms; 1 without
/// `normalize` (no norms).
fn inv(norms: &[Norm], i: usize) -> f64 {
    norms.get(i).map_or(1.0, |n| n.inv)
}

pub struct Dot {
    a: Side,
    b: Side,
    /// Size of the summed axis.
    n: usize,
    normalize: bool,
    /// With `normalize`: each input's norms per sample and remaining element,
    /// from the last forward (grown with the batch only).
    norms_a: Vec<Norm>,
    norms_b: Vec<Norm>,
    output_shape: Vec<usize>,
    out_len: usize,
}

/// Shapes as Keras prints them, batch axis first: `(None, 4)`.
fn keras_shape(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("(None, {})", dims.join(", "))
}

/// Calls `f(sample, chunk)` for each `width`-element chunk of `data`, in
/// parallel when `parallel`; each chunk is written by one call in a fixed
/// order, so the results do not depend on the threads.
fn per_sample<T: Send>(
    data: &mut [T],
    width: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    if width == 0 {
        return;
    }
    if parallel {
        data.par_chunks_mut(width)
            .enumerate()
            .for_each(|(r, c)| f(r, c));
    } else {
        data.chunks_mut(width)
            .enumerate()
            .for_each(|(r, c)| f(r, c));
    }
}

/// Each input's norms along the summed axis, per sample and remaining element.
fn norms(x: &[f32], side: Side, n: usize, out: &mut [Norm], parallel: bool) {
    per_sample(out, side.m, parallel, |r, row| {
        let x = &x[r * side.len..][..side.len];
        for (norm, base) in row.iter_mut().zip(side.bases(n)) {
            let sum_sq = (0..n)
                .map(|k| (x[base + k * side.post] as f64).powi(2))
                .sum();
            *norm = Norm::of(sum_sq);
        }
    });
}

impl Dot {
    pub fn build(name: &str, config: &Value, shapes: &[&[usize]]) -> Result<Self> {
        let [s1, s2] = shapes else {
            crate::bail!(
                "Dot '{name}': a Dot layer takes exactly 2 inputs, got {}",
                shapes.len()
            );
        };
        if s1.is_empty() || s2.is_empty() {
            crate::bail!(
                "Dot '{name}': inputs need at least one axis besides the batch axis; got input \
                 shapes [{}, {}]",
                keras_shape(s1),
                keras_shape(s2)
            );
        }
        let axes = field(config, "axes");
        let bad_axes = || {
            Error(format!(
                "Dot '{name}': 'axes' must be an integer or a list of two integers, got {axes}"
            ))
        };
        let (ax1, ax2) = match axes {
            Value::Number(_) => {
                let a = axes.as_i64().ok_or_else(bad_axes)?;
                (a, a)
            }
            Value::Array(pair) if pair.len() == 2 => (
                pair[0].as_i64().ok_or_else(bad_axes)?,
                pair[1].as_i64().ok_or_else(bad_axes)?,
            ),
            _ => return Err(bad_axes()),
        };
        // Counted with the batch axis; a negative axis from the end of its own input.
        let resolve = |a: i64, shape: &[usize]| -> Result<usize> {
            let rank = shape.len() as i64 + 1;
            let r = if a < 0 { a + rank } else { a };
            if r < 1 || r >= rank {
                crate::bail!(
                    "Dot '{name}': axis {a} is out of range for an input of shape {}; it must \
                     name a non-batch axis (1 to {last}, or -1 to -{last})",
                    keras_shape(shape),
                    last = rank - 1,
                );
            }
            Ok(r as usize)
        };
        let (k1, k2) = (resolve(ax1, s1)?, resolve(ax2, s2)?);
        let (n1, n2) = (s1[k1 - 1], s2[k2 - 1]);
        if n1 != n2 {
            crate::bail!(
                "Dot '{name}': incompatible input shapes: axis values {n1} (axis {k1} of {}) and \
                 {n2} (axis {k2} of {})",
                keras_shape(s1),
                keras_shape(s2)
            );
        }
        let normalize = match field(config, "normalize") {
            Value::Null => false,
            Value::Bool(b) => *b,
            v => crate::bail!("Dot '{name}': 'normalize' must be true or false, got {v}"),
        };
        let remaining = |s: &'_ [usize], k: usize| {
            let mut s = s.to_vec();
            s.remove(k - 1);
            s
        };
        let mut output_shape = remaining(s1, k1);
        output_shape.extend(remaining(s2, k2));
        if output_shape.is_empty() {
            output_shape.push(1);
        }
        let (a, b) = (Side::new(s1, k1 - 1), Side::new(s2, k2 - 1));
        Ok(Dot {
            a,
            b,
            n: n1,
            normalize,
            norms_a: Vec::new(),
            norms_b: Vec::new(),
            out_len: a.m * b.m,
            output_shape,
        })
    }

    /// Whether the work of `rows` samples (the output times the length of each
    /// sum) is worth spreading over threads.
    fn parallel(&self, rows: usize) -> bool {
        rows > 1
            && rows * self.out_len * self.n.max(1) >= PARALLEL_THRESHOLD
            && rayon::current_num_threads() > 1
    }

    /// Sample `r`'s norms of each input; empty without `normalize`.
    fn sample_norms(&self, r: usize) -> (&[Norm], &[Norm]) {
        if !self.normalize {
            return (&[], &[]);
        }
        let (ma, mb) = (self.a.m, self.b.m);
        (&self.norms_a[r * ma..][..ma], &self.norms_b[r * mb..][..mb])
    }
}

impl Layer for Dot {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    /// Never called: a Dot layer is built for exactly two inputs.
    fn forward(&mut self, _x: &[f32], _y: &mut [f32], _rows: usize, _ctx: &Ctx<'_>) {
        unreachable!("Dot takes exactly 2 inputs (checked when built)");
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        _dy: &mut [f32],
        _dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        unreachable!("Dot takes exactly 2 inputs (checked when built)");
    }

    fn forward_many(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize, _ctx: &Ctx<'_>) {
        let (x1, x2) = (xs[0], xs[1]);
        let (a, b, n) = (self.a, self.b, self.n);
        let parallel = self.parallel(rows);
        if self.normalize {
            if self.norms_a.len() < rows * a.m {
                self.norms_a.resize(rows * a.m, Norm::default());
            }
            if self.norms_b.len() < rows * b.m {
                self.norms_b.resize(rows * b.m, Norm::default());
            }
            norms(x1, a, n, &mut self.norms_a[..rows * a.m], parallel);
            norms(x2, b, n, &mut self.norms_b[..rows * b.m], parallel);
        }
        let this = &*self;
        per_sample(
            &mut y[..rows * this.out_len],
            this.out_len,
            parallel,
            |r, row| {
                let (x1, x2) = (&x1[r * a.len..][..a.len], &x2[r * b.len..][..b.len]);
                let (na, nb) = this.sample_norms(r);
                let mut out = row.iter_mut();
                for (i1, base1) in a.bases(n).enumerate() {
                    for (i2, base2) in b.bases(n).enumerate() {
                        let dot: f64 = (0..n)
                            .map(|k| x1[base1 + k * a.post] as f64 * x2[base2 + k * b.post] as f64)
                            .sum();
                        let v = out.next().expect("one output per pair");
                        *v = (dot * inv(na, i1) * inv(nb, i2)) as f32;
                    }
                }
            },
        );
    }

    /// With u = x·g (g the inverse norm, 1 without `normalize`), y = Σ_k u1·u2,
    /// so du1 = Σ_i2 dy·u2 and dx1 = g1·(du1 − u1·Σ_i2 dy·y), the second term
    /// only where the norm is not the constant floor; likewise for x2.
    fn backward_many(
        &mut self,
        xs: &[&[f32]],
        y: &[f32],
        dy: &mut [f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let (x1, x2) = (xs[0], xs[1]);
        let (a, b, n, out_len) = (self.a, self.b, self.n, self.out_len);
        let parallel = self.parallel(rows);
        let this = &*self;
        let dy = &*dy;
        let sample = |r: usize| {
            (
                &x1[r * a.len..][..a.len],
                &x2[r * b.len..][..b.len],
                &dy[r * out_len..][..out_len],
                &y[r * out_len..][..out_len],
            )
        };
        if let Some(dx1) = dxs[0].as_deref_mut() {
            per_sample(&mut dx1[..rows * a.len], a.len, parallel, |r, d| {
                let (x1, x2, dy, y) = sample(r);
                let (na, nb) = this.sample_norms(r);
                for (i1, base1) in a.bases(n).enumerate() {
                    let (dy, y) = (&dy[i1 * b.m..][..b.m], &y[i1 * b.m..][..b.m]);
                    let g1 = inv(na, i1);
                    let c = match na.get(i1) {
                        Some(norm) if !norm.floor => {
                            g1 * dy
                                .iter()
                                .zip(y)
                                .map(|(&d, &v)| d as f64 * v as f64)
                                .sum::<f64>()
                        }
                        _ => 0.0,
                    };
                    for k in 0..n {
                        let du: f64 = b
                            .bases(n)
                            .enumerate()
                            .map(|(i2, base2)| {
                                dy[i2] as f64 * inv(nb, i2) * x2[base2 + k * b.post] as f64
                            })
                            .sum();
                        let at = base1 + k * a.post;
                        d[at] = (g1 * (du - x1[at] as f64 * c)) as f32;
                    }
                }
            });
        }
        if let Some(dx2) = dxs[1].as_deref_mut() {
            per_sample(&mut dx2[..rows * b.len], b.len, parallel, |r, d| {
                let (x1, x2, dy, y) = sample(r);
                let (na, nb) = this.sample_norms(r);
                for (i2, base2) in b.bases(n).enumerate() {
                    let g2 = inv(nb, i2);
                    let c = match nb.get(i2) {
                        Some(norm) if !norm.floor => {
                            g2 * (0..a.m)
                                .map(|i1| dy[i1 * b.m + i2] as f64 * y[i1 * b.m + i2] as f64)
                                .sum::<f64>()
                        }
                        _ => 0.0,
                    };
                    for k in 0..n {
                        let du: f64 = a
                            .bases(n)
                            .enumerate()
                            .map(|(i1, base1)| {
                                dy[i1 * b.m + i2] as f64
                                    * inv(na, i1)
                                    * x1[base1 + k * a.post] as f64
                            })
                            .sum();
                        let at = base2 + k * b.post;
                        d[at] = (g2 * (du - x2[at] as f64 * c)) as f32;
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Ctx<'static> {
        Ctx::for_tests(true)
    }

    /// Deterministic values in about [-1, 1].
    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 37 + seed * 101) % 97) as f32 / 48.0) - 1.0)
            .collect()
    }

    /// Forward then backward from `dy`; returns (y, dx1, dx2).
    fn run(
        config: Value,
        s1: &[usize],
        s2: &[usize],
        x1: &[f32],
        x2: &[f32],
        dy: &[f32],
        rows: usize,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut layer = Dot::build("d", &config, &[s1, s2]).unwrap();
        let out: usize = layer.output_shape().iter().product();
        let mut y = vec![f32::NAN; rows * out];
        layer.forward_many(&[x1, x2], &mut y, rows, &ctx());
        let mut d = dy.to_vec();
        let mut d1 = vec![f32::NAN; x1.len()];
        let mut d2 = vec![f32::NAN; x2.len()];
        layer.backward_many(
            &[x1, x2],
            &y,
            &mut d,
            &mut [Some(&mut d1[..]), Some(&mut d2[..])],
            rows,
        );
        (y, d1, d2)
    }

    /// Naive reference in f64 of y = Σ_k u1[.., k, ..]·u2[.., k, ..] per sample,
    /// from explicit multi-indices, with optional normalisation; each input is
    /// given as its per-sample shape and summed (per-sample) axis.
    fn reference(
        (s1, k1): (&[usize], usize),
        (s2, k2): (&[usize], usize),
        x1: &[f64],
        x2: &[f64],
        rows: usize,
        normalize: bool,
    ) -> Vec<f64> {
        let side = |s: &[usize], k: usize| {
            let pre: usize = s[..k].iter().product();
            let post: usize = s[k + 1..].iter().product();
            (pre, s[k], post)
        };
        let (p1, n, q1) = side(s1, k1);
        let (p2, _, q2) = side(s2, k2);
        let norm = |x: &[f64], q: usize, a: usize, c: usize| -> f64 {
            if !normalize {
                return 1.0;
            }
            let s: f64 = (0..n).map(|k| x[(a * n + k) * q + c].powi(2)).sum();
            1.0 / s.max(EPSILON).sqrt()
        };
        let (l1, l2) = (p1 * n * q1, p2 * n * q2);
        let mut y = Vec::new();
        for r in 0..rows {
            let (x1, x2) = (&x1[r * l1..][..l1], &x2[r * l2..][..l2]);
            for a1 in 0..p1 {
                for c1 in 0..q1 {
                    for a2 in 0..p2 {
                        for c2 in 0..q2 {
                            let g = norm(x1, q1, a1, c1) * norm(x2, q2, a2, c2);
                            let s: f64 = (0..n)
                                .map(|k| x1[(a1 * n + k) * q1 + c1] * x2[(a2 * n + k) * q2 + c2])
                                .sum();
                            y.push(s * g);
                        }
                    }
                }
            }
        }
        y
    }

    /// Forward against the reference, and the gradient against central
    /// differences of the f64 reference.
    fn check(axes: Value, s1: &[usize], s2: &[usize], normalize: bool, want_shape: &[usize]) {
        let rows = 2;
        let l1: usize = s1.iter().product();
        let l2: usize = s2.iter().product();
        let x1 = values(rows * l1, 1);
        let x2 = values(rows * l2, 2);
        let config = json!({"axes": axes.clone(), "normalize": normalize});
        let layer = Dot::build("d", &config, &[s1, s2]).unwrap();
        assert_eq!(layer.output_shape(), want_shape);
        let out: usize = want_shape.iter().product();
        let dy = values(rows * out, 3);
        let (y, d1, d2) = run(config, s1, s2, &x1, &x2, &dy, rows);
        let resolve =
            |a: i64, s: &[usize]| (if a < 0 { a + s.len() as i64 + 1 } else { a }) as usize - 1;
        let (a1, a2) = match &axes {
            Value::Array(p) => (p[0].as_i64().unwrap(), p[1].as_i64().unwrap()),
            v => (v.as_i64().unwrap(), v.as_i64().unwrap()),
        };
        let (k1, k2) = (resolve(a1, s1), resolve(a2, s2));
        let f64s = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let (x1d, x2d) = (f64s(&x1), f64s(&x2));
        let want = reference((s1, k1), (s2, k2), &x1d, &x2d, rows, normalize);
        for (g, w) in y.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5, "y {g} vs {w}");
        }
        let loss = |x1: &[f64], x2: &[f64]| -> f64 {
            reference((s1, k1), (s2, k2), x1, x2, rows, normalize)
                .iter()
                .zip(&dy)
                .map(|(y, &d)| y * d as f64)
                .sum()
        };
        let h = 1e-6;
        for (side, got) in [(0, &d1), (1, &d2)] {
            for i in 0..got.len() {
                let (mut p1, mut p2) = (x1d.clone(), x2d.clone());
                let (mut m1, mut m2) = (x1d.clone(), x2d.clone());
                if side == 0 {
                    p1[i] += h;
                    m1[i] -= h;
                } else {
                    p2[i] += h;
                    m2[i] -= h;
                }
                let fd = (loss(&p1, &p2) - loss(&m1, &m2)) / (2.0 * h);
                assert!(
                    (got[i] as f64 - fd).abs() < 1e-4 * (1.0 + fd.abs()),
                    "input {side} element {i}: {} vs {fd}",
                    got[i]
                );
            }
        }
    }

    #[test]
    fn dot_shapes_forward_and_gradients() {
        for normalize in [false, true] {
            check(json!(1), &[4], &[4], normalize, &[1]);
            check(json!(-1), &[4], &[4], normalize, &[1]);
            check(json!([2, 1]), &[3, 4], &[4], normalize, &[3]);
            check(json!([1, 2]), &[4], &[3, 4], normalize, &[3]);
            check(json!([1, 1]), &[4, 3], &[4], normalize, &[3]);
            check(json!(2), &[3, 4], &[5, 4], normalize, &[3, 5]);
            check(json!(-1), &[3, 4], &[5, 4], normalize, &[3, 5]);
            check(json!(1), &[4, 3], &[4, 5], normalize, &[3, 5]);
            check(json!([1, 2]), &[4, 3], &[5, 4], normalize, &[3, 5]);
            check(json!([-2, -1]), &[4, 3], &[5, 4], normalize, &[3, 5]);
            check(json!([2, 2]), &[2, 4, 3], &[3, 4], normalize, &[2, 3, 3]);
        }
    }

    #[test]
    fn dot_of_vectors_and_cosine() {
        let x1 = [1.0, 2.0, 3.0, 0.0, 3.0, 4.0];
        let x2 = [4.0, 5.0, 6.0, 0.0, 6.0, 8.0];
        let dy = [1.0, 1.0];
        let (y, d1, d2) = run(json!({"axes": -1}), &[3], &[3], &x1, &x2, &dy, 2);
        assert_eq!(y, vec![32.0, 50.0]);
        assert_eq!(d1, x2.to_vec());
        assert_eq!(d2, x1.to_vec());
        // Parallel vectors: cosine 1, and no gradient (the cosine is at its maximum).
        let config = json!({"axes": 1, "normalize": true});
        let (y, d1, d2) = run(config, &[3], &[3], &x1, &x2, &dy, 2);
        assert!((y[1] - 1.0).abs() < 1e-6, "{y:?}");
        assert!(
            d1[3..].iter().chain(&d2[3..]).all(|v| v.abs() < 1e-6),
            "{d1:?} {d2:?}"
        );
    }

    #[test]
    fn dot_normalize_of_zero_vector_is_zero_with_finite_gradient() {
        let config = json!({"axes": 1, "normalize": true});
        let (y, d1, d2) = run(config, &[2], &[2], &[0.0, 0.0], &[3.0, 4.0], &[1.0], 1);
        assert_eq!(y, vec![0.0]);
        // u1 = x1 / sqrt(ε): du1/dx1 = 1/sqrt(ε), times u2 = (0.6, 0.8).
        assert!(
            (d1[0] - 0.6e6).abs() < 1.0 && (d1[1] - 0.8e6).abs() < 1.0,
            "{d1:?}"
        );
        assert_eq!(d2, vec![0.0, 0.0]);
    }

    #[test]
    fn dot_large_batch_takes_the_parallel_path_with_the_same_results() {
        let (s1, s2) = ([8usize, 16], [8usize, 16]);
        let config = json!({"axes": 2, "normalize": true});
        let x1 = values(64 * 128, 4);
        let x2 = values(64 * 128, 5);
        let dy = values(64 * 64, 6);
        let (y, d1, d2) = run(config.clone(), &s1, &s2, &x1, &x2, &dy, 64);
        for r in [0, 17, 63] {
            let one = |x: &[f32], l: usize| x[r * l..][..l].to_vec();
            let (y1, e1, e2) = run(
                config.clone(),
                &s1,
                &s2,
                &one(&x1, 128),
                &one(&x2, 128),
                &one(&dy, 64),
                1,
            );
            assert_eq!(y1, one(&y, 64));
            assert_eq!(e1, one(&d1, 128));
            assert_eq!(e2, one(&d2, 128));
        }
    }

    #[test]
    fn dot_errors_name_the_layer_and_shapes() {
        let err = |config: Value, shapes: &[&[usize]]| {
            Dot::build("dot", &config, shapes).err().unwrap().0
        };
        assert_eq!(
            err(json!({"axes": 1}), &[&[4], &[5]]),
            "Dot 'dot': incompatible input shapes: axis values 4 (axis 1 of (None, 4)) and 5 \
             (axis 1 of (None, 5))"
        );
        let e = err(json!({"axes": -1}), &[&[3, 4], &[4, 3]]);
        assert!(
            e.contains("axis 2 of (None, 3, 4)") && e.contains("(None, 4, 3)"),
            "{e}"
        );
        let e = err(json!({"axes": 0}), &[&[4], &[4]]);
        assert!(e.contains("out of range") && e.contains("'dot'"), "{e}");
        let e = err(json!({"axes": -3}), &[&[4], &[4]]);
        assert!(e.contains("out of range"), "{e}");
        let e = err(json!({"axes": 1}), &[&[4], &[4], &[4]]);
        assert!(e.contains("exactly 2"), "{e}");
        let e = err(json!({"axes": [1]}), &[&[4], &[4]]);
        assert!(e.contains("'axes'"), "{e}");
        let e = err(json!({"axes": 1, "normalize": 1}), &[&[4], &[4]]);
        assert!(e.contains("'normalize'"), "{e}");
    }

    #[test]
    fn dot_is_dispatched_by_merge_build() {
        let layer =
            super::super::merge::build("Dot", "d", &json!({"axes": 2}), &[&[3, 4], &[5, 4]])
                .unwrap()
                .unwrap();
        assert_eq!(layer.output_shape(), &[3, 5]);
    }
}
