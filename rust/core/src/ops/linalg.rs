//! matmul with NumPy semantics: (..., m, k) @ (..., k, n) → (..., m, n) with the
//! leading axes broadcast, and rank-1 operands promoted then dropped.
//!
//! A right operand that is a fixed matrix (a weight) is the common case and
//! runs as one GEMM over all leading axes of the left operand collapsed into
//! rows; its gradients are then one GEMM each as well. Otherwise the op loops
//! over the broadcast leading index, one GEMM per matrix, and the backward adds
//! the per-matrix gradients of a broadcast operand in that fixed order.

use super::strided::{broadcast_strides, Walk};
use super::{broadcast, expect_inputs, Op, Operand};
use crate::error::Result;
use crate::matmul::Gemm;
use serde_json::Value;

pub(super) fn build(name: &str, _attrs: &Value, inputs: &[Operand]) -> Option<Result<Box<dyn Op>>> {
    (name == "matmul").then(|| MatMul::build(inputs).map(|op| Box::new(op) as Box<dyn Op>))
}

struct MatMul {
    a: Operand,
    b: Operand,
    out: Operand,
    m: usize,
    k: usize,
    n: usize,
    /// The leading axes' broadcast (its shape only), for the general path;
    /// None for the fixed-matrix fast path.
    lead: Option<Operand>,
}

/// The operand without its last `drop` axes (the matrix axes).
fn leading(x: &Operand, drop: usize) -> Operand {
    let keep = x.shape.len().saturating_sub(drop);
    Operand {
        shape: x.shape[..keep].to_vec(),
        batched: x.batched,
    }
}

impl MatMul {
    fn build(inputs: &[Operand]) -> Result<Self> {
        expect_inputs("matmul", inputs, 2)?;
        let (a, b) = (&inputs[0], &inputs[1]);
        let (ra, rb) = (a.rank(), b.rank());
        if ra == 0 || rb == 0 {
            crate::bail!("matmul needs operands of rank 1 or more (use multiply for scalars)");
        }
        let (da, db) = (a.dims(1), b.dims(1));
        // The batch axis may be a leading axis, or the rows m of a left operand
        // times a fixed matrix; never k (its size is unknown here) nor n.
        if (a.batched && ra == 1) || (b.batched && rb <= 2) {
            crate::bail!("the batch axis would be a contracted or column axis");
        }
        let k = da[ra - 1];
        let (kb, n) = if rb == 1 {
            (db[0], 1)
        } else {
            (db[rb - 2], db[rb - 1])
        };
        if k != kb {
            crate::bail!(
                "{} @ {}: the contracted sizes differ ({k} and {kb})",
                a.describe(),
                b.describe()
            );
        }
        let m = if ra == 1 { 1 } else { da[ra - 2] };
        let tail_n: &[usize] = if rb == 1 { &[] } else { &[n] };
        if !b.batched && rb <= 2 {
            // Fast path: the left operand's rows times one fixed matrix.
            let mut shape = a.shape[..a.shape.len() - 1].to_vec();
            shape.extend_from_slice(tail_n);
            let out = Operand {
                shape,
                batched: a.batched,
            };
            return Ok(MatMul {
                a: a.clone(),
                b: b.clone(),
                out,
                m,
                k,
                n,
                lead: None,
            });
        }
        if a.batched && ra == 2 {
            crate::bail!(
                "the batch axis of {} would be a matrix axis against {}",
                a.describe(),
                b.describe()
            );
        }
        let lead = broadcast(&[&leading(a, 2), &leading(b, 2)])?;
        let mut shape = lead.shape.clone();
        if ra >= 2 {
            shape.push(m);
        }
        shape.extend_from_slice(tail_n);
        let out = Operand {
            shape,
            batched: lead.batched,
        };
        Ok(MatMul {
            a: a.clone(),
            b: b.clone(),
            out,
            m,
            k,
            n,
            lead: Some(lead),
        })
    }

    /// Rows of the fast path's single product: every axis of the left operand but k.
    fn rows(&self, rows: usize) -> usize {
        let d = self.a.dims(rows);
        d.as_slice()[..d.rank() - 1].iter().product()
    }

    /// The walk over the leading index, giving each operand's matrix index.
    fn walk(&self, lead: &Operand, rows: usize) -> Walk<2> {
        let od = lead.dims(rows);
        let r = od.rank();
        let lead_dims = |x: &Operand| {
            let d = x.dims(rows);
            let keep = d.rank().saturating_sub(2);
            broadcast_strides(&d.as_slice()[..keep], r)
        };
        let (sa, sb) = (lead_dims(&self.a), lead_dims(&self.b));
        Walk::new(od.as_slice(), [&sa[..r], &sb[..r]])
    }

    /// Calls `f(l, ia, ib)` for each leading index l with its operands' matrices.
    fn each_matrix(&self, lead: &Operand, rows: usize, mut f: impl FnMut(usize, usize, usize)) {
        let w = self.walk(lead, rows);
        let [sa, sb] = w.inner_strides();
        let mut l = 0;
        w.runs(0, w.len(), |[oa, ob], cnt| {
            for i in 0..cnt {
                f(l, oa + i * sa, ob + i * sb);
                l += 1;
            }
        });
    }
}

impl Op for MatMul {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        let (a, b) = (xs[0], xs[1]);
        let (m, k, n) = (self.m, self.k, self.n);
        let Some(lead) = &self.lead else {
            Gemm::new(self.rows(rows), k, n).run(a, b, y, false);
            return;
        };
        let g = Gemm::new(m, k, n);
        self.each_matrix(lead, rows, |l, ia, ib| {
            let c = &mut y[l * m * n..(l + 1) * m * n];
            g.run(&a[ia * m * k..], &b[ib * k * n..], c, false);
        });
    }

    fn backward(
        &mut self,
        xs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let (a, b) = (xs[0], xs[1]);
        let (m, k, n) = (self.m, self.k, self.n);
        let Some(lead) = &self.lead else {
            let rows = self.rows(rows);
            // dA = dY·Bᵀ and dB = Aᵀ·dY, each one product over all rows.
            if let Some(da) = dxs[0].as_deref_mut() {
                Gemm::new(rows, n, k).trans_b().run(dy, b, da, false);
            }
            if let Some(db) = dxs[1].as_deref_mut() {
                Gemm::new(k, rows, n).trans_a().run(a, dy, db, false);
            }
            return;
        };
        let (first, second) = dxs.split_at_mut(1);
        let (mut da, mut db) = (first[0].as_deref_mut(), second[0].as_deref_mut());
        if let Some(d) = da.as_deref_mut() {
            d.fill(0.0);
        }
        if let Some(d) = db.as_deref_mut() {
            d.fill(0.0);
        }
        let (ga, gb) = (Gemm::new(m, n, k).trans_b(), Gemm::new(k, m, n).trans_a());
        self.each_matrix(lead, rows, |l, ia, ib| {
            let dyl = &dy[l * m * n..(l + 1) * m * n];
            if let Some(d) = da.as_deref_mut() {
                ga.run(dyl, &b[ib * k * n..], &mut d[ia * m * k..], true);
            }
            if let Some(d) = db.as_deref_mut() {
                gb.run(&a[ia * m * k..], dyl, &mut d[ib * k * n..], true);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    fn matmul(s1: &[usize], s2: &[usize], x1: &[f32], x2: &[f32]) -> (Vec<f32>, Operand) {
        let ops = [Operand::fixed(s1), Operand::fixed(s2)];
        let out = make("matmul", &json!({}), &ops).output().clone();
        (eval("matmul", &json!({}), &ops, &[x1, x2]), out)
    }

    #[test]
    fn numpy_shapes_and_values() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // (2, 3)
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // (3, 2)
        let (y, out) = matmul(&[2, 3], &[3, 2], &a, &b);
        assert_eq!(
            (y, out),
            (vec![4.0, 5.0, 10.0, 11.0], Operand::fixed(&[2, 2]))
        );
        let (y, out) = matmul(&[3], &[3, 2], &[1.0, 2.0, 3.0], &b);
        assert_eq!((y, out), (vec![4.0, 5.0], Operand::fixed(&[2])));
        let (y, out) = matmul(&[2, 3], &[3], &a, &[1.0, 1.0, 1.0]);
        assert_eq!((y, out), (vec![6.0, 15.0], Operand::fixed(&[2])));
        let (y, out) = matmul(&[3], &[3], &[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0]);
        assert_eq!((y, out), (vec![6.0], Operand::fixed(&[])));
        // (2, 1, 3) @ (2, 3, 1): leading axes broadcast (2,) with (2,), one matrix each.
        let b2 = [1.0, 1.0, 1.0, 0.0, 0.0, 1.0];
        let (y, out) = matmul(&[2, 1, 3], &[2, 3, 1], &a, &b2);
        assert_eq!((y, out), (vec![6.0, 6.0], Operand::fixed(&[2, 1, 1])));
        // (2, 1, 1, 3) @ (3, 3, 1) → (2, 3, 1, 1).
        let (_, out) = matmul(&[2, 1, 1, 3], &[3, 3, 1], &a, &random(9, 1, 1.0));
        assert_eq!(out, Operand::fixed(&[2, 3, 1, 1]));
    }

    #[test]
    fn gradients() {
        let cases: [(&[usize], &[usize]); 7] = [
            (&[3, 4], &[4, 5]),
            (&[2, 3, 4], &[4, 5]),
            (&[4], &[4, 2]),
            (&[3, 4], &[4]),
            (&[2, 3, 4], &[2, 4, 5]),
            (&[3, 4], &[2, 4, 5]),
            (&[2, 1, 3, 4], &[3, 4, 2]),
        ];
        for (s1, s2) in cases {
            let ops = [Operand::fixed(s1), Operand::fixed(s2)];
            let xs = [random(ops[0].size(), 1, 1.0), random(ops[1].size(), 2, 1.0)];
            check_grad("matmul", &json!({}), &ops, &xs, 0);
        }
    }

    #[test]
    fn batched_matches_fixed() {
        let cases = [
            (Operand::batched(&[4]), Operand::fixed(&[4, 6])),
            (Operand::batched(&[3, 4]), Operand::fixed(&[4, 6])),
            (Operand::batched(&[3, 4]), Operand::fixed(&[4])),
            (Operand::batched(&[3, 4]), Operand::batched(&[4, 2])),
            (Operand::batched(&[3, 2, 4]), Operand::fixed(&[3, 4, 5])),
            (Operand::fixed(&[2, 4]), Operand::batched(&[4, 3])),
        ];
        for (a, b) in cases {
            check_batched("matmul", &json!({}), &[a, b], 5);
        }
        let op = make(
            "matmul",
            &json!({}),
            &[Operand::batched(&[4]), Operand::fixed(&[4, 6])],
        );
        assert_eq!(op.output(), &Operand::batched(&[6]));
    }

    #[test]
    fn errors() {
        let err = build_err(
            "matmul",
            &[Operand::fixed(&[2, 3]), Operand::fixed(&[4, 2])],
        );
        assert!(err.contains("contracted sizes differ (3 and 4)"), "{err}");
        let err = build_err("matmul", &[Operand::batched(&[3]), Operand::batched(&[3])]);
        assert!(err.contains("batch axis"), "{err}");
        let err = build_err(
            "matmul",
            &[Operand::batched(&[2, 3]), Operand::fixed(&[5, 3, 2])],
        );
        assert!(err.contains("cannot broadcast"), "{err}");
        let err = build_err("matmul", &[Operand::fixed(&[]), Operand::fixed(&[2])]);
        assert!(err.contains("rank 1 or more"), "{err}");
    }
}
