//! Ops that move data without arithmetic: reshape, transpose, concatenate,
//! slice, take, tile, repeat and pad.
//!
//! Most are one strided walk (see `strided.rs`): the forward gathers the
//! result from the input and the backward walks back, writing or (where the
//! forward read an element several times: take, tile, repeat) summing in f64.
//! The batch axis must stay axis 0 and keep all its rows, since its size is
//! only known per batch.

use super::strided::{gather, scatter_add, store, strides_of, zeroed, Walk, WALK_RANK};
use super::{attr, attr_f32, attr_int, attr_ints, expect_inputs, resolve_axis, Op, Operand};
use crate::error::Result;
use serde_json::Value;

pub(super) fn build(name: &str, attrs: &Value, inputs: &[Operand]) -> Option<Result<Box<dyn Op>>> {
    fn boxed<T: Op + 'static>(r: Result<T>) -> Result<Box<dyn Op>> {
        r.map(|op| Box::new(op) as Box<dyn Op>)
    }
    Some(match name {
        "reshape" => boxed(Reshape::build(attrs, inputs)),
        "transpose" => boxed(Transpose::build(attrs, inputs)),
        "concatenate" => boxed(Concatenate::build(attrs, inputs)),
        "slice" => boxed(Slice::build(attrs, inputs)),
        "take" => boxed(Take::build(attrs, inputs)),
        "tile" => boxed(Tile::build("tile", attrs, inputs)),
        "repeat" => boxed(Tile::build("repeat", attrs, inputs)),
        "pad" => boxed(Pad::build(attrs, inputs)),
        _ => return None,
    })
}

/// A required list-of-integers attribute.
fn required_ints(attrs: &Value, key: &str) -> Result<Vec<i64>> {
    attr_ints(attrs, key)?
        .ok_or_else(|| crate::error::Error(format!("needs '{key}', a list of integers")))
}

/// A required integer attribute.
fn required_int(attrs: &Value, key: &str) -> Result<i64> {
    attr_int(attrs, key)?.ok_or_else(|| crate::error::Error(format!("needs '{key}', an integer")))
}

/// An operand with the same batching as `like` from a full shape.
fn from_full(full: &[usize], batched: bool) -> Operand {
    if batched {
        Operand::batched(&full[1..])
    } else {
        Operand::fixed(full)
    }
}

/// The result's full shape, the batch axis replaced by `rows`.
fn full_dims(full: &[usize], batched: bool, rows: usize) -> Vec<usize> {
    let mut d = full.to_vec();
    if batched {
        d[0] = rows;
    }
    d
}

/// reshape: the same data under another shape.
struct Reshape {
    out: Operand,
}

impl Reshape {
    fn build(attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs("reshape", inputs, 1)?;
        let x = &inputs[0];
        let target = required_ints(attrs, "shape")?;
        let rest = if x.batched {
            if target.first() != Some(&-1) {
                crate::bail!(
                    "the target shape {target:?} must start with -1 to keep the batch axis"
                );
            }
            &target[1..]
        } else {
            &target[..]
        };
        let size = x.size();
        let mut infer = None;
        let mut known = 1usize;
        for (i, &d) in rest.iter().enumerate() {
            if d == -1 && infer.is_none() {
                infer = Some(i);
            } else if d < 0 {
                crate::bail!("the target shape {target:?} has a bad size {d}");
            } else {
                known = known.checked_mul(d as usize).ok_or_else(|| {
                    crate::error::Error(format!(
                        "the target shape {target:?} has more elements than can be counted"
                    ))
                })?;
            }
        }
        let mut shape: Vec<usize> = rest.iter().map(|&d| d.max(0) as usize).collect();
        if let Some(i) = infer {
            if known == 0 || !size.is_multiple_of(known) {
                crate::bail!("cannot reshape {} into {target:?}", x.describe());
            }
            shape[i] = size / known;
        } else if known != size {
            crate::bail!(
                "cannot reshape {} ({size} elements{}) into {target:?}",
                x.describe(),
                if x.batched { " per sample" } else { "" }
            );
        }
        Ok(Reshape {
            out: Operand {
                shape,
                batched: x.batched,
            },
        })
    }
}

impl Op for Reshape {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], _rows: usize) {
        y.copy_from_slice(xs[0]);
    }

    fn backward(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        _rows: usize,
    ) {
        if let Some(dx) = dxs[0].as_deref_mut() {
            dx.copy_from_slice(dy);
        }
    }

    fn is_reshape(&self) -> bool {
        true
    }
}

/// transpose: axes permuted.
struct Transpose {
    input: Operand,
    perm: Vec<usize>,
    out: Operand,
}

impl Transpose {
    fn build(attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs("transpose", inputs, 1)?;
        let x = &inputs[0];
        let rank = x.rank();
        let perm: Vec<usize> = match attr_ints(attrs, "axes")? {
            None => (0..rank).rev().collect(),
            Some(axes) => {
                if axes.len() != rank {
                    crate::bail!("axes {axes:?} must name each of the {rank} axes once");
                }
                let perm = axes
                    .iter()
                    .map(|&a| resolve_axis(a, rank))
                    .collect::<Result<Vec<_>>>()?;
                let mut seen = vec![false; rank];
                for &p in &perm {
                    if std::mem::replace(&mut seen[p], true) {
                        crate::bail!("axes {axes:?} must name each of the {rank} axes once");
                    }
                }
                perm
            }
        };
        if x.batched && perm.first().is_some_and(|&p| p != 0) {
            crate::bail!("axes {perm:?} would move the batch axis (axis 0 must stay first)");
        }
        let full = x.dims(1);
        let out_full: Vec<usize> = perm.iter().map(|&p| full[p]).collect();
        Ok(Transpose {
            input: x.clone(),
            perm,
            out: from_full(&out_full, x.batched),
        })
    }
}

impl Op for Transpose {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        let d = self.input.dims(rows);
        let s = strides_of(&d);
        let r = d.rank();
        let (mut od, mut os) = ([0; WALK_RANK], [0; WALK_RANK]);
        for (i, &p) in self.perm.iter().enumerate() {
            (od[i], os[i]) = (d[p], s[p]);
        }
        gather(&Walk::new(&od[..r], [&os[..r]]), xs[0], y);
    }

    fn backward(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let Some(dx) = dxs[0].as_deref_mut() else {
            return;
        };
        // dx is dy transposed back: walk the input's axes, reading dy.
        let d = self.input.dims(rows);
        let r = d.rank();
        let od = self.out.dims(rows);
        let os = strides_of(&od);
        let mut s = [0; WALK_RANK];
        for (i, &p) in self.perm.iter().enumerate() {
            s[p] = os[i];
        }
        gather(&Walk::new(d.as_slice(), [&s[..r]]), dy, dx);
    }
}

/// concatenate: inputs joined along one axis.
struct Concatenate {
    /// Each input's chunk: its elements from `axis` on (never the batch axis).
    lens: Vec<usize>,
    axis: usize,
    out: Operand,
}

impl Concatenate {
    fn build(attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        if inputs.is_empty() {
            crate::bail!("concatenate needs at least one input");
        }
        let first = &inputs[0];
        let rank = first.rank();
        if inputs.iter().any(|x| x.batched != first.batched) {
            crate::bail!("cannot join batched and unbatched inputs");
        }
        if rank == 0 {
            crate::bail!("cannot join scalars (rank 0)");
        }
        let axis = resolve_axis(attr_int(attrs, "axis")?.unwrap_or(0), rank)?;
        if first.batched && axis == 0 {
            crate::bail!("cannot join along the batch axis (axis 0)");
        }
        let mut full = first.dims(1).as_slice().to_vec();
        for x in &inputs[1..] {
            let d = x.dims(1);
            let same = x.rank() == rank && (0..rank).all(|a| a == axis || d[a] == full[a]);
            if !same {
                crate::bail!(
                    "inputs must have equal shapes except along axis {axis}, got {}",
                    super::describe_all(&inputs.iter().collect::<Vec<_>>())
                );
            }
            full[axis] += d[axis];
        }
        let lens = inputs
            .iter()
            .map(|x| x.dims(1).as_slice()[axis..].iter().product())
            .collect();
        Ok(Concatenate {
            lens,
            axis,
            out: from_full(&full, first.batched),
        })
    }

    /// How many chunks each input has: the product of the axes before `axis`.
    fn outer(&self, rows: usize) -> usize {
        let d = self.out.dims(rows);
        d.as_slice()[..self.axis].iter().product()
    }
}

impl Op for Concatenate {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        let (outer, lens) = (self.outer(rows), &self.lens);
        let mut p = 0;
        for o in 0..outer {
            for (x, &len) in xs.iter().zip(lens) {
                y[p..p + len].copy_from_slice(&x[o * len..(o + 1) * len]);
                p += len;
            }
        }
    }

    fn backward(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let (outer, lens) = (self.outer(rows), &self.lens);
        let mut p = 0;
        for o in 0..outer {
            for (dx, &len) in dxs.iter_mut().zip(lens) {
                if let Some(dx) = dx.as_deref_mut() {
                    dx[o * len..(o + 1) * len].copy_from_slice(&dy[p..p + len]);
                }
                p += len;
            }
        }
    }
}

/// slice: begin..end by step along every axis.
struct Slice {
    input: Operand,
    begin: Vec<usize>,
    step: Vec<usize>,
    out: Operand,
    /// The result's full shape (axis 0 a placeholder when batched).
    out_full: Vec<usize>,
}

impl Slice {
    fn build(attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs("slice", inputs, 1)?;
        let x = &inputs[0];
        let rank = x.rank();
        let begin = required_ints(attrs, "begin")?;
        let end = required_ints(attrs, "end")?;
        let step = attr_ints(attrs, "step")?.unwrap_or_else(|| vec![1; rank]);
        if begin.len() != rank || end.len() != rank || step.len() != rank {
            crate::bail!("begin, end and step need one entry for each of the {rank} axes");
        }
        let full = x.dims(1);
        let mut out_full = Vec::with_capacity(rank);
        for ax in 0..rank {
            let (b, e, s) = (begin[ax], end[ax], step[ax]);
            if x.batched && ax == 0 {
                if (b, e, s) != (0, -1, 1) {
                    crate::bail!(
                        "the batch axis (axis 0) must keep all its rows: begin 0, end -1, step 1"
                    );
                }
                out_full.push(1);
                continue;
            }
            let d = full[ax] as i64;
            let e = if e == -1 { d } else { e };
            if b < 0 || b > d || e < 0 || e > d || s < 1 {
                crate::bail!(
                    "axis {ax} of size {d}: begin {b}, end {e}, step {s} are out of range"
                );
            }
            out_full.push(if e > b {
                ((e - b + s - 1) / s) as usize
            } else {
                0
            });
        }
        Ok(Slice {
            input: x.clone(),
            begin: begin.iter().map(|&b| b as usize).collect(),
            step: step.iter().map(|&s| s as usize).collect(),
            out: from_full(&out_full, x.batched),
            out_full,
        })
    }

    /// The walk over the result reading the input, and its first element's offset.
    fn walk(&self, rows: usize) -> (Walk<1>, usize) {
        let d = self.input.dims(rows);
        let s = strides_of(&d);
        let od = full_dims(&self.out_full, self.input.batched, rows);
        let mut st = [0; WALK_RANK];
        let mut base = 0;
        for ax in 0..d.rank() {
            st[ax] = s[ax] * self.step[ax];
            base += self.begin[ax] * s[ax];
        }
        (Walk::new(&od, [&st[..d.rank()]]), base)
    }
}

impl Op for Slice {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        if y.is_empty() {
            return;
        }
        let (w, base) = self.walk(rows);
        gather(&w, &xs[0][base..], y);
    }

    fn backward(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let Some(dx) = dxs[0].as_deref_mut() else {
            return;
        };
        dx.fill(0.0);
        if dy.is_empty() {
            return;
        }
        let (w, base) = self.walk(rows);
        let [s] = w.inner_strides();
        let mut p = 0;
        w.runs(0, w.len(), |[o], n| {
            for (i, &g) in dy[p..p + n].iter().enumerate() {
                dx[base + o + i * s] = g;
            }
            p += n;
        });
    }
}

/// take: NumPy take of a list of indices along one axis.
struct Take {
    input: Operand,
    axis: usize,
    indices: Vec<usize>,
    out: Operand,
    acc: Vec<f64>,
}

impl Take {
    fn build(attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs("take", inputs, 1)?;
        let x = &inputs[0];
        let rank = x.rank();
        let given = required_ints(attrs, "indices")?;
        let ishape: Vec<usize> = match attr_ints(attrs, "indices_shape")? {
            None => vec![given.len()],
            Some(s) if s.iter().all(|&d| d >= 0) => s.iter().map(|&d| d as usize).collect(),
            Some(s) => crate::bail!("indices_shape {s:?} has a negative size"),
        };
        if ishape.iter().product::<usize>() != given.len() {
            crate::bail!(
                "{} indices do not fill indices_shape {ishape:?}",
                given.len()
            );
        }
        let axis = resolve_axis(required_int(attrs, "axis")?, rank)?;
        if x.batched && axis == 0 {
            crate::bail!("cannot take along the batch axis (axis 0)");
        }
        let full = x.dims(1);
        let d = full[axis] as i64;
        let indices = given
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + d } else { i };
                if j < 0 || j >= d {
                    crate::bail!("index {i} is out of range for axis {axis} of size {d}");
                }
                Ok(j as usize)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out_full = full.as_slice()[..axis].to_vec();
        out_full.extend_from_slice(&ishape);
        out_full.extend_from_slice(&full.as_slice()[axis + 1..]);
        Ok(Take {
            input: x.clone(),
            axis,
            indices,
            out: from_full(&out_full, x.batched),
            acc: Vec::new(),
        })
    }

    /// (blocks before the axis, the axis's size, elements after it).
    fn split(&self, rows: usize) -> (usize, usize, usize) {
        let d = self.input.dims(rows);
        let s = d.as_slice();
        (
            s[..self.axis].iter().product(),
            s[self.axis],
            s[self.axis + 1..].iter().product(),
        )
    }
}

impl Op for Take {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        let (outer, d, inner) = self.split(rows);
        let mut p = 0;
        for o in 0..outer {
            for &i in &self.indices {
                let src = (o * d + i) * inner;
                y[p..p + inner].copy_from_slice(&xs[0][src..src + inner]);
                p += inner;
            }
        }
    }

    fn backward(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let Some(dx) = dxs[0].as_deref_mut() else {
            return;
        };
        let (outer, d, inner) = self.split(rows);
        let acc = zeroed(&mut self.acc, dx.len());
        let mut p = 0;
        for o in 0..outer {
            for &i in &self.indices {
                let dst = (o * d + i) * inner;
                for (a, &g) in acc[dst..dst + inner].iter_mut().zip(&dy[p..p + inner]) {
                    *a += g as f64;
                }
                p += inner;
            }
        }
        store(acc, dx);
    }
}

/// tile and repeat: both read each input element several times, so both are a
/// broadcast walk over a view with extra stride-0 axes.
struct Tile {
    input: Operand,
    /// tile: a repeat count per axis, placed before the axis; repeat: one count
    /// placed after `axis`.
    reps: Vec<usize>,
    axis: Option<usize>,
    out: Operand,
    acc: Vec<f64>,
}

/// A tile or repeat whose result has more elements than can be counted.
fn too_many(shape: &[usize], repeats: &[i64]) -> crate::error::Error {
    crate::error::Error(format!(
        "repeating {shape:?} by {repeats:?} gives more elements than can be counted"
    ))
}

/// An operand's full shape (batch axis 1), for messages.
fn full_before(x: &Operand) -> Vec<usize> {
    x.dims(1).as_slice().to_vec()
}

impl Tile {
    fn build(name: &str, attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs(name, inputs, 1)?;
        let x = &inputs[0];
        let rank = x.rank();
        let mut full = x.dims(1).as_slice().to_vec();
        let (reps, axis) = if name == "tile" {
            let given = required_ints(attrs, "repeats")?;
            if given.len() > rank || given.iter().any(|&r| r < 0) {
                crate::bail!(
                    "repeats {given:?} needs at most {rank} counts (one per axis), none negative"
                );
            }
            // Fewer counts than axes apply to the last axes, as in NumPy.
            let mut reps = vec![1usize; rank - given.len()];
            reps.extend(given.iter().map(|&r| r as usize));
            if x.batched && reps[0] != 1 {
                crate::bail!("cannot tile the batch axis (axis 0): its count must be 1");
            }
            for (d, r) in full.iter_mut().zip(&reps) {
                *d = d
                    .checked_mul(*r)
                    .ok_or_else(|| too_many(&full_before(x), &given))?;
            }
            (reps, None)
        } else {
            let r = required_int(attrs, "repeats")?;
            if r < 0 {
                crate::bail!("repeats must not be negative, got {r}");
            }
            let axis = resolve_axis(required_int(attrs, "axis")?, rank)?;
            if x.batched && axis == 0 {
                crate::bail!("cannot repeat along the batch axis (axis 0)");
            }
            full[axis] = full[axis]
                .checked_mul(r as usize)
                .ok_or_else(|| too_many(&full_before(x), &[r]))?;
            (vec![r as usize], Some(axis))
        };
        Ok(Tile {
            input: x.clone(),
            reps,
            axis,
            out: from_full(&full, x.batched),
            acc: Vec::new(),
        })
    }

    /// The walk in the result's order over the input with stride-0 repeat axes.
    fn walk(&self, rows: usize) -> Walk<1> {
        let d = self.input.dims(rows);
        let s = strides_of(&d);
        let (mut vd, mut vs, mut n) = ([0; WALK_RANK], [0; WALK_RANK], 0);
        let mut push = |dim: usize, stride: usize| {
            (vd[n], vs[n]) = (dim, stride);
            n += 1;
        };
        for ax in 0..d.rank() {
            match self.axis {
                None => {
                    push(self.reps[ax], 0);
                    push(d[ax], s[ax]);
                }
                Some(a) => {
                    push(d[ax], s[ax]);
                    if ax == a {
                        push(self.reps[0], 0);
                    }
                }
            }
        }
        Walk::new(&vd[..n], [&vs[..n]])
    }
}

impl Op for Tile {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        gather(&self.walk(rows), xs[0], y);
    }

    fn backward(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let Some(dx) = dxs[0].as_deref_mut() else {
            return;
        };
        let w = self.walk(rows);
        let acc = zeroed(&mut self.acc, dx.len());
        scatter_add(&w, dy, acc);
        store(acc, dx);
    }
}

/// pad: a constant border before and after every axis.
struct Pad {
    input: Operand,
    before: Vec<usize>,
    value: f32,
    out: Operand,
}

impl Pad {
    fn build(attrs: &Value, inputs: &[Operand]) -> Result<Self> {
        expect_inputs("pad", inputs, 1)?;
        let x = &inputs[0];
        let rank = x.rank();
        let widths: Option<Vec<Vec<i64>>> = attr(attrs, "pad_width")
            .as_array()
            .and_then(|a| a.iter().map(super::as_ints).collect());
        let widths = match widths {
            Some(w)
                if w.len() == rank && w.iter().all(|p| p.len() == 2 && p[0] >= 0 && p[1] >= 0) =>
            {
                w
            }
            _ => crate::bail!(
                "pad_width must be {rank} pairs [before, after] of sizes >= 0, got {}",
                attr(attrs, "pad_width")
            ),
        };
        if x.batched && widths[0] != [0, 0] {
            crate::bail!("cannot pad the batch axis (axis 0): its pad must be [0, 0]");
        }
        let mut full = x.dims(1).as_slice().to_vec();
        for (d, w) in full.iter_mut().zip(&widths) {
            *d += (w[0] + w[1]) as usize;
        }
        Ok(Pad {
            input: x.clone(),
            before: widths.iter().map(|w| w[0] as usize).collect(),
            value: attr_f32(attrs, "constant_values", 0.0)?,
            out: from_full(&full, x.batched),
        })
    }

    /// The walk over the input reading the result, and the input's first offset there.
    fn walk(&self, rows: usize) -> (Walk<1>, usize) {
        let d = self.input.dims(rows);
        let os = strides_of(&self.out.dims(rows));
        let base = (0..d.rank()).map(|a| self.before[a] * os[a]).sum();
        (Walk::new(d.as_slice(), [&os[..d.rank()]]), base)
    }
}

impl Op for Pad {
    fn output(&self) -> &Operand {
        &self.out
    }

    fn forward(&mut self, xs: &[&[f32]], y: &mut [f32], rows: usize) {
        y.fill(self.value);
        let x = xs[0];
        if x.is_empty() {
            return;
        }
        let (w, base) = self.walk(rows);
        let [s] = w.inner_strides();
        let mut p = 0;
        w.runs(0, w.len(), |[o], n| {
            for (i, &v) in x[p..p + n].iter().enumerate() {
                y[base + o + i * s] = v;
            }
            p += n;
        });
    }

    fn backward(
        &mut self,
        _xs: &[&[f32]],
        _y: &[f32],
        dy: &[f32],
        dxs: &mut [Option<&mut [f32]>],
        rows: usize,
    ) {
        let Some(dx) = dxs[0].as_deref_mut() else {
            return;
        };
        if dx.is_empty() {
            return;
        }
        let (w, base) = self.walk(rows);
        gather(&w, &dy[base..], dx);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    fn iota(n: usize) -> Vec<f32> {
        (0..n).map(|i| i as f32).collect()
    }

    fn run1(name: &str, attrs: Value, shape: &[usize]) -> (Vec<f32>, Operand) {
        let ops = [Operand::fixed(shape)];
        let x = iota(ops[0].size());
        let out = make(name, &attrs, &ops).output().clone();
        (eval(name, &attrs, &ops, &[&x]), out)
    }

    #[test]
    fn reshape_and_transpose() {
        let (y, out) = run1("reshape", json!({"shape": [3, -1]}), &[2, 3]);
        assert_eq!((y, out), (iota(6), Operand::fixed(&[3, 2])));
        let op = make(
            "reshape",
            &json!({"shape": [-1, 2, 6]}),
            &[Operand::batched(&[3, 4])],
        );
        assert_eq!(op.output(), &Operand::batched(&[2, 6]));
        assert!(op.is_reshape());
        let (y, out) = run1("transpose", json!({}), &[2, 3]);
        assert_eq!(
            (y, out),
            (vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0], Operand::fixed(&[3, 2]))
        );
        let (y, out) = run1("transpose", json!({"axes": [1, 2, 0]}), &[2, 2, 2]);
        assert_eq!(y, [0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]);
        assert_eq!(out, Operand::fixed(&[2, 2, 2]));
        let x = random(24, 3, 1.0);
        for axes in [json!([2, 0, 1]), json!([0, 2, 1]), json!(null)] {
            check_grad(
                "transpose",
                &json!({ "axes": axes }),
                &[Operand::fixed(&[2, 3, 4])],
                std::slice::from_ref(&x),
                0,
            );
        }
        check_grad(
            "reshape",
            &json!({"shape": [4, 6]}),
            &[Operand::fixed(&[2, 3, 4])],
            &[x],
            0,
        );
        check_batched(
            "transpose",
            &json!({"axes": [0, 2, 1]}),
            &[Operand::batched(&[3, 4])],
            5,
        );
        check_batched(
            "reshape",
            &json!({"shape": [-1, 12]}),
            &[Operand::batched(&[3, 4])],
            5,
        );
    }

    #[test]
    fn concatenate_and_slice() {
        let ops = [Operand::fixed(&[2, 2]), Operand::fixed(&[2, 1])];
        let y = eval(
            "concatenate",
            &json!({"axis": -1}),
            &ops,
            &[&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0]],
        );
        assert_eq!(y, [1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
        let xs = [random(4, 1, 1.0), random(2, 2, 1.0)];
        check_grad("concatenate", &json!({"axis": 1}), &ops, &xs, 0);
        let ops0 = [Operand::fixed(&[2, 2]), Operand::fixed(&[1, 2])];
        let y = eval(
            "concatenate",
            &json!({}),
            &ops0,
            &[&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0]],
        );
        assert_eq!(y, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        check_batched(
            "concatenate",
            &json!({"axis": 2}),
            &[Operand::batched(&[2, 3]), Operand::batched(&[2, 1])],
            4,
        );

        let (y, out) = run1(
            "slice",
            json!({"begin": [1, 0], "end": [-1, 4], "step": [1, 2]}),
            &[3, 4],
        );
        assert_eq!(
            (y, out),
            (vec![4.0, 6.0, 8.0, 10.0], Operand::fixed(&[2, 2]))
        );
        let (y, _) = run1(
            "slice",
            json!({"begin": [0, 3], "end": [1, 2], "step": [1, 1]}),
            &[3, 4],
        );
        assert!(y.is_empty());
        let attrs = json!({"begin": [1, 1, 0], "end": [3, -1, 4], "step": [1, 2, 3]});
        check_grad(
            "slice",
            &attrs,
            &[Operand::fixed(&[3, 4, 5])],
            &[random(60, 1, 1.0)],
            0,
        );
        let attrs = json!({"begin": [0, 1, 0], "end": [-1, -1, 4], "step": [1, 2, 3]});
        check_batched("slice", &attrs, &[Operand::batched(&[4, 5])], 3);
        let op = make("slice", &attrs, &[Operand::batched(&[4, 5])]);
        assert_eq!(op.output(), &Operand::batched(&[2, 2]));
    }

    #[test]
    fn take_tile_repeat_pad() {
        let (y, out) = run1(
            "take",
            json!({"indices": [2, -3, 2, 0], "indices_shape": [2, 2], "axis": 1}),
            &[2, 3],
        );
        assert_eq!(y, [2.0, 0.0, 2.0, 0.0, 5.0, 3.0, 5.0, 3.0]);
        assert_eq!(out, Operand::fixed(&[2, 2, 2]));
        let (y, out) = run1("tile", json!({"repeats": [2, 1]}), &[1, 2]);
        assert_eq!(
            (y, out),
            (vec![0.0, 1.0, 0.0, 1.0], Operand::fixed(&[2, 2]))
        );
        let (y, _) = run1("tile", json!({"repeats": [2]}), &[2, 2]);
        assert_eq!(y, [0.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 3.0]);
        let (y, out) = run1("repeat", json!({"repeats": 2, "axis": 0}), &[2, 2]);
        assert_eq!(y, [0.0, 1.0, 0.0, 1.0, 2.0, 3.0, 2.0, 3.0]);
        assert_eq!(out, Operand::fixed(&[4, 2]));
        let (y, _) = run1("repeat", json!({"repeats": 2, "axis": -1}), &[2, 2]);
        assert_eq!(y, [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        let (y, out) = run1(
            "pad",
            json!({"pad_width": [[1, 0], [0, 2]], "constant_values": -1}),
            &[1, 2],
        );
        assert_eq!(y, [-1.0, -1.0, -1.0, -1.0, 0.0, 1.0, -1.0, -1.0]);
        assert_eq!(out, Operand::fixed(&[2, 4]));

        let op = [Operand::fixed(&[2, 3, 2])];
        let x = random(12, 4, 1.0);
        for (name, attrs) in [
            ("take", json!({"indices": [0, 2, 2, -1], "axis": 1})),
            ("tile", json!({"repeats": [2, 1, 3]})),
            ("repeat", json!({"repeats": 3, "axis": 1})),
            ("pad", json!({"pad_width": [[0, 1], [2, 1], [1, 0]]})),
        ] {
            check_grad(name, &attrs, &op, std::slice::from_ref(&x), 0);
        }
        let b = [Operand::batched(&[3, 2])];
        for (name, attrs) in [
            (
                "take",
                json!({"indices": [0, 2], "indices_shape": [2, 1], "axis": 1}),
            ),
            ("take", json!({"indices": [1, 1, 0], "axis": -1})),
            ("tile", json!({"repeats": [1, 2, 3]})),
            ("repeat", json!({"repeats": 2, "axis": 2})),
            ("pad", json!({"pad_width": [[0, 0], [1, 2], [0, 1]]})),
        ] {
            check_batched(name, &attrs, &b, 4);
        }
    }

    #[test]
    fn errors() {
        let b = [Operand::batched(&[3, 4])];
        let cases = [
            (
                "transpose",
                json!({"axes": [1, 0, 2]}),
                "move the batch axis",
            ),
            ("transpose", json!({}), "move the batch axis"),
            (
                "transpose",
                json!({"axes": [0, 1, 1]}),
                "each of the 3 axes once",
            ),
            ("reshape", json!({"shape": [3, 4]}), "must start with -1"),
            (
                "reshape",
                json!({"shape": [-1, 5]}),
                "cannot reshape (None, 3, 4)",
            ),
            (
                "slice",
                json!({"begin": [1, 0, 0], "end": [-1, 3, 4]}),
                "batch axis",
            ),
            (
                "slice",
                json!({"begin": [0, 0, 0], "end": [-1, 4, 4]}),
                "out of range",
            ),
            ("take", json!({"indices": [0], "axis": 0}), "batch axis"),
            (
                "take",
                json!({"indices": [3], "axis": 1}),
                "index 3 is out of range",
            ),
            ("tile", json!({"repeats": [2, 1, 1]}), "batch axis"),
            ("repeat", json!({"repeats": 2, "axis": 0}), "batch axis"),
            (
                "pad",
                json!({"pad_width": [[1, 0], [0, 0], [0, 0]]}),
                "batch axis",
            ),
            ("pad", json!({"pad_width": [[0, 0]]}), "pairs"),
        ];
        for (name, attrs, want) in cases {
            let err = build_err_with(name, &attrs, &b);
            assert!(err.contains(want), "{name} {attrs}: {err}");
        }
        let err = build_err_with(
            "concatenate",
            &json!({"axis": 0}),
            &[Operand::batched(&[3]), Operand::batched(&[3])],
        );
        assert!(err.contains("batch axis"), "{err}");
        let err = build_err(
            "concatenate",
            &[Operand::batched(&[3]), Operand::fixed(&[2, 3])],
        );
        assert!(err.contains("batched and unbatched"), "{err}");
        let err = build_err_with(
            "concatenate",
            &json!({"axis": 1}),
            &[Operand::fixed(&[2, 3]), Operand::fixed(&[3, 3])],
        );
        assert!(err.contains("equal shapes except along axis 1"), "{err}");
    }
}
