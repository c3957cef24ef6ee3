//! Runs a cell over a sequence: forward through time and backpropagation
//! through time (BPTT), for a batch of `rows` samples of `steps` × `features`.
//!
//! The input projection of every step is one GEMM before the recurrence, and
//! the input and recurrent kernels' gradients are one GEMM each after it; only
//! the (rows × units)·(units × gates·units) recurrent product runs per step.
//! Buffers are laid out sample-major, (rows, steps, ·), indexed by real time,
//! so the big GEMMs read the layer's input and write its gradient in place.

use super::cell::{Cell, CellKind, StepBackward, StepForward};
use crate::layers::{Ctx, Param};
use crate::matmul::Gemm;
use crate::parallel::PARALLEL_THRESHOLD;
use crate::rng::Key;
use rayon::prelude::*;

/// Fixed settings of one recurrent layer.
#[derive(Clone, Copy)]
pub struct RnnSpec {
    pub cell: Cell,
    pub steps: usize,
    pub features: usize,
    pub use_bias: bool,
    pub return_sequences: bool,
    pub return_state: bool,
    pub go_backwards: bool,
    pub stateful: bool,
    /// Masked steps output zeros instead of repeating the previous output.
    pub zero_output_for_mask: bool,
    pub dropout: f32,
    pub recurrent_dropout: f32,
}

impl RnnSpec {
    pub fn units(&self) -> usize {
        self.cell.units
    }

    fn width(&self) -> usize {
        self.cell.kind.gates() * self.cell.units
    }

    /// Values per sample of the main output (the sequence or the last step).
    pub fn main_size(&self) -> usize {
        if self.return_sequences {
            self.steps * self.units()
        } else {
            self.units()
        }
    }

    /// Values per sample written by forward: the main output, then the final states.
    pub fn output_size(&self) -> usize {
        let states = if self.return_state {
            self.units()
                * if self.cell.kind.has_cell_state() {
                    2
                } else {
                    1
                }
        } else {
            0
        };
        self.main_size() + states
    }

    /// Real time index of processing step `s`.
    fn time(&self, s: usize) -> usize {
        if self.go_backwards {
            self.steps - 1 - s
        } else {
            s
        }
    }
}

/// A buffer shared by a parallel loop over rows in which each call touches
/// only its own row's parts (the per-row slices of a step are strided, so
/// they cannot be handed out as chunks).
#[derive(Clone, Copy)]
struct Rows(*mut f32, usize);

// SAFETY: used only by `for_each_row` callers that write disjoint ranges.
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

impl Rows {
    fn of(v: &mut [f32]) -> Self {
        Rows(v.as_mut_ptr(), v.len())
    }

    /// # Safety
    /// No two live slices from the same buffer may overlap.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        assert!(start + len <= self.1, "row range out of bounds");
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// Runs `f(r)` for rows 0..rows, split across the pool when a step is big
/// enough (each row's work is independent, so the result is the same).
fn for_each_row(rows: usize, width: usize, f: impl Fn(usize) + Sync + Send) {
    if rows * width >= PARALLEL_THRESHOLD / 2 && rayon::current_num_threads() > 1 {
        (0..rows).into_par_iter().with_min_len(8).for_each(f);
    } else {
        (0..rows).for_each(f);
    }
}

/// Per-sample dropout multipliers (0 or 1/(1-rate)), the same at every step as in Keras.
fn dropout_mask(key: Key, rate: f32, len: usize, mask: &mut Vec<f32>) {
    let scale = 1.0 / (1.0 - rate);
    mask.clear();
    mask.extend((0..len as u64).map(|i| {
        if key.uniform_f32(i) >= rate {
            scale
        } else {
            0.0
        }
    }));
}

pub struct Rnn {
    pub spec: RnnSpec,
    /// What the last forward pass leaves for backward (see `forward`).
    x_dropped: Vec<f32>,
    input_keep: Vec<f32>,
    recurrent_keep: Vec<f32>,
    step_keep: Vec<bool>,
    z: Vec<f32>,
    a: Vec<f32>,
    h_in: Vec<f32>,
    h_prev: Vec<f32>,
    c_prev: Vec<f32>,
    c_act: Vec<f32>,
    zh_candidate: Vec<f32>,
    /// Per-step scratch and the running state.
    h: Vec<f32>,
    c: Vec<f32>,
    h_next: Vec<f32>,
    c_next: Vec<f32>,
    zh: Vec<f32>,
    /// State carried between batches (stateful layers).
    carried_h: Vec<f32>,
    carried_c: Vec<f32>,
    /// Backward buffers.
    dz_input: Vec<f32>,
    dz_recurrent: Vec<f32>,
    dz_step: Vec<f32>,
    dh_step: Vec<f32>,
    cell_scratch: Vec<f32>,
}

impl Rnn {
    pub fn new(spec: RnnSpec) -> Self {
        Rnn {
            spec,
            x_dropped: Vec::new(),
            input_keep: Vec::new(),
            recurrent_keep: Vec::new(),
            step_keep: Vec::new(),
            z: Vec::new(),
            a: Vec::new(),
            h_in: Vec::new(),
            h_prev: Vec::new(),
            c_prev: Vec::new(),
            c_act: Vec::new(),
            zh_candidate: Vec::new(),
            h: Vec::new(),
            c: Vec::new(),
            h_next: Vec::new(),
            c_next: Vec::new(),
            zh: Vec::new(),
            carried_h: Vec::new(),
            carried_c: Vec::new(),
            dz_input: Vec::new(),
            dz_recurrent: Vec::new(),
            dz_step: Vec::new(),
            dh_step: Vec::new(),
            cell_scratch: Vec::new(),
        }
    }

    pub fn reset_states(&mut self) {
        self.carried_h.clear();
        self.carried_c.clear();
    }

    fn input_dropout_active(&self) -> bool {
        !self.input_keep.is_empty()
    }

    /// y ← the layer's output for `rows` samples of x (rows × steps × features);
    /// `params` are [kernel, recurrent_kernel, bias?]. `initial`: the starting
    /// state (h, then c for an LSTM; rows × units each) when given, as Keras's
    /// `initial_state`.
    pub fn forward(
        &mut self,
        params: &[Param],
        x: &[f32],
        y: &mut [f32],
        rows: usize,
        ctx: &Ctx,
        initial: &[&[f32]],
    ) {
        let spec = self.spec;
        let (t_len, f, u, g) = (spec.steps, spec.features, spec.units(), spec.width());
        let kernel = params[0].value_slice();
        let recurrent = params[1].value_slice();
        let bias = spec.use_bias.then(|| params[2].value_slice());

        // Input dropout: one mask per sample and feature, reused at every step.
        self.input_keep.clear();
        let x_used: &[f32] = if ctx.training && spec.dropout > 0.0 {
            dropout_mask(
                ctx.key.fold(1),
                spec.dropout,
                rows * f,
                &mut self.input_keep,
            );
            self.x_dropped.resize(rows * t_len * f, 0.0);
            for (r, (xs, out)) in x
                .chunks(t_len * f)
                .zip(self.x_dropped.chunks_mut(t_len * f))
                .enumerate()
            {
                let keep = &self.input_keep[r * f..(r + 1) * f];
                for (xr, or) in xs.chunks(f).zip(out.chunks_mut(f)) {
                    for ((o, &v), &k) in or.iter_mut().zip(xr).zip(keep) {
                        *o = v * k;
                    }
                }
            }
            &self.x_dropped
        } else {
            x
        };
        self.recurrent_keep.clear();
        if ctx.training && spec.recurrent_dropout > 0.0 {
            dropout_mask(
                ctx.key.fold(2),
                spec.recurrent_dropout,
                rows * u,
                &mut self.recurrent_keep,
            );
        }
        self.step_keep.clear();
        if let Some(mask) = ctx.mask {
            self.step_keep.extend_from_slice(&mask[..rows * t_len]);
        }

        // Input projection of every step at once: z = x·W + b_input.
        let n = rows * t_len;
        self.z.resize(n * g, 0.0);
        Gemm::new(n, f, g).run(x_used, kernel, &mut self.z, false);
        if let Some(b) = bias {
            for row in self.z.chunks_mut(g) {
                for (v, &bv) in row.iter_mut().zip(&b[..g]) {
                    *v += bv;
                }
            }
        }
        self.a.resize(n * g, 0.0);
        for buf in [
            &mut self.h_in,
            &mut self.h_prev,
            &mut self.c_prev,
            &mut self.c_act,
            &mut self.zh_candidate,
        ] {
            buf.resize(n * u, 0.0);
        }

        // The starting state: given, or carried from the last batch when stateful,
        // else zeros.
        for (k, (state, carried)) in [
            (&mut self.h, &self.carried_h),
            (&mut self.c, &self.carried_c),
        ]
        .into_iter()
        .enumerate()
        {
            state.clear();
            if let Some(given) = initial.get(k) {
                state.extend_from_slice(&given[..rows * u]);
            } else if spec.stateful && carried.len() == rows * u {
                state.extend_from_slice(carried);
            } else {
                state.resize(rows * u, 0.0);
            }
        }
        self.h_next.resize(rows * u, 0.0);
        self.c_next.resize(rows * u, 0.0);
        self.zh.resize(rows * g, 0.0);

        let out_size = spec.output_size();
        for s in 0..t_len {
            let t = spec.time(s);
            // The state entering step t, with recurrent dropout, feeds the recurrent GEMM.
            for r in 0..rows {
                let at = (r * t_len + t) * u;
                let h = &self.h[r * u..(r + 1) * u];
                self.h_prev[at..at + u].copy_from_slice(h);
                self.c_prev[at..at + u].copy_from_slice(&self.c[r * u..(r + 1) * u]);
                let h_in = &mut self.h_in[at..at + u];
                if self.recurrent_keep.is_empty() {
                    h_in.copy_from_slice(h);
                } else {
                    for ((o, &v), &k) in h_in
                        .iter_mut()
                        .zip(h)
                        .zip(&self.recurrent_keep[r * u..(r + 1) * u])
                    {
                        *o = v * k;
                    }
                }
            }
            // zh = h_in(step t)·U (+ recurrent bias for GRU), rows gathered contiguously.
            for r in 0..rows {
                let at = (r * t_len + t) * u;
                self.h_next[r * u..(r + 1) * u].copy_from_slice(&self.h_in[at..at + u]);
            }
            Gemm::new(rows, u, g).run(&self.h_next, recurrent, &mut self.zh, false);
            if let (CellKind::Gru, Some(b)) = (spec.cell.kind, bias) {
                for row in self.zh.chunks_mut(g) {
                    for (v, &bv) in row.iter_mut().zip(&b[g..2 * g]) {
                        *v += bv;
                    }
                }
            }
            let (z, a, zh_cand, c_act) = (
                Rows::of(&mut self.z),
                Rows::of(&mut self.a),
                Rows::of(&mut self.zh_candidate),
                Rows::of(&mut self.c_act),
            );
            let (h, c, h_next, c_next, out) = (
                Rows::of(&mut self.h),
                Rows::of(&mut self.c),
                Rows::of(&mut self.h_next),
                Rows::of(&mut self.c_next),
                Rows::of(y),
            );
            let (zh, h_prev, c_prev, step_keep) =
                (&self.zh, &self.h_prev, &self.c_prev, &self.step_keep);
            for_each_row(rows, g, |r| {
                let at = (r * t_len + t) * u;
                let atg = (r * t_len + t) * g;
                let ru = r * u;
                // SAFETY: row r's parts of these buffers are touched by this call only.
                unsafe {
                    spec.cell.forward(StepForward {
                        z: z.get(atg, g),
                        a: a.get(atg, g),
                        zh: &zh[r * g..(r + 1) * g],
                        h_prev: &h_prev[at..at + u],
                        c_prev: &c_prev[at..at + u],
                        zh_candidate: zh_cand.get(at, u),
                        c_act: c_act.get(at, u),
                        h_new: h_next.get(ru, u),
                        c_new: c_next.get(ru, u),
                    });
                    // A masked step leaves the state as it was.
                    let keep = step_keep.is_empty() || step_keep[r * t_len + t];
                    if keep {
                        h.get(ru, u).copy_from_slice(h_next.get(ru, u));
                        c.get(ru, u).copy_from_slice(c_next.get(ru, u));
                    }
                    if spec.return_sequences {
                        let out = out.get(r * out_size + s * u, u);
                        if keep || !spec.zero_output_for_mask {
                            out.copy_from_slice(h.get(ru, u));
                        } else {
                            out.fill(0.0);
                        }
                    }
                }
            });
        }
        for r in 0..rows {
            let ru = r * u..(r + 1) * u;
            let sample = &mut y[r * out_size..(r + 1) * out_size];
            let mut at = spec.main_size();
            if !spec.return_sequences {
                sample[..u].copy_from_slice(&self.h[ru.clone()]);
            }
            if spec.return_state {
                sample[at..at + u].copy_from_slice(&self.h[ru.clone()]);
                at += u;
                if spec.cell.kind.has_cell_state() {
                    sample[at..at + u].copy_from_slice(&self.c[ru]);
                }
            }
        }
        if spec.stateful {
            self.carried_h.clone_from(&self.h);
            self.carried_c.clone_from(&self.c);
        }
    }

    /// After `backward`: the gradient of the starting state h (and c of an LSTM),
    /// rows × units each.
    pub fn initial_state_grads(&self) -> [&[f32]; 2] {
        [&self.h, &self.c]
    }

    /// Sets the params' gradients (and dx if asked) from dy, the gradient of
    /// forward's output. Stateful layers do not backpropagate into earlier batches.
    pub fn backward(
        &mut self,
        params: &mut [Param],
        x: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        rows: usize,
    ) {
        let spec = self.spec;
        let (t_len, f, u, g) = (spec.steps, spec.features, spec.units(), spec.width());
        let n = rows * t_len;
        let out_size = spec.output_size();
        // dh, dc: gradients of the running state; start from the final outputs.
        let mut dh = std::mem::take(&mut self.h);
        let mut dc = std::mem::take(&mut self.c);
        dh.clear();
        dc.clear();
        dh.resize(rows * u, 0.0);
        dc.resize(rows * u, 0.0);
        for r in 0..rows {
            let sample = &dy[r * out_size..(r + 1) * out_size];
            let d = &mut dh[r * u..(r + 1) * u];
            if !spec.return_sequences {
                d.copy_from_slice(&sample[..u]);
            }
            if spec.return_state {
                let at = spec.main_size();
                for (a, &b) in d.iter_mut().zip(&sample[at..at + u]) {
                    *a += b;
                }
                if spec.cell.kind.has_cell_state() {
                    dc[r * u..(r + 1) * u].copy_from_slice(&sample[at + u..at + 2 * u]);
                }
            }
        }
        self.dz_input.resize(n * g, 0.0);
        self.dz_recurrent.resize(n * g, 0.0);
        self.dz_step.resize(rows * g, 0.0);
        self.dh_step.resize(rows * u, 0.0);
        self.cell_scratch.resize(rows * 2 * u, 0.0);
        let recurrent = params[1].value_slice();
        for s in (0..t_len).rev() {
            let t = spec.time(s);
            let (dh_rows, dc_rows, dzi, dzr, dzs, scratch) = (
                Rows::of(&mut dh),
                Rows::of(&mut dc),
                Rows::of(&mut self.dz_input),
                Rows::of(&mut self.dz_recurrent),
                Rows::of(&mut self.dz_step),
                Rows::of(&mut self.cell_scratch),
            );
            let (z, a, h_prev, c_prev, zh_cand, c_act, step_keep) = (
                &self.z,
                &self.a,
                &self.h_prev,
                &self.c_prev,
                &self.zh_candidate,
                &self.c_act,
                &self.step_keep,
            );
            for_each_row(rows, g, |r| {
                let ru = r * u;
                let keep = step_keep.is_empty() || step_keep[r * t_len + t];
                let at = (r * t_len + t) * u;
                let atg = (r * t_len + t) * g;
                // SAFETY: row r's parts of these buffers are touched by this call only.
                unsafe {
                    let dh = dh_rows.get(ru, u);
                    if spec.return_sequences && (keep || !spec.zero_output_for_mask) {
                        let d_out = &dy[r * out_size + s * u..][..u];
                        for (a, &b) in dh.iter_mut().zip(d_out) {
                            *a += b;
                        }
                    }
                    if !keep {
                        // The state passed through unchanged: so does its gradient.
                        dzi.get(atg, g).fill(0.0);
                        dzr.get(atg, g).fill(0.0);
                        dzs.get(r * g, g).fill(0.0);
                        return;
                    }
                    spec.cell.backward(
                        StepBackward {
                            z: &z[atg..atg + g],
                            a: &a[atg..atg + g],
                            h_prev: &h_prev[at..at + u],
                            c_prev: &c_prev[at..at + u],
                            zh_candidate: &zh_cand[at..at + u],
                            c_act: &c_act[at..at + u],
                            dh,
                            dc: dc_rows.get(ru, u),
                            dz_input: dzi.get(atg, g),
                            dz_recurrent: dzr.get(atg, g),
                        },
                        scratch.get(r * 2 * u, 2 * u),
                    );
                    dzs.get(r * g, g).copy_from_slice(dzr.get(atg, g));
                }
            });
            // dh_prev += (dz_recurrent·Uᵀ) ⊙ recurrent dropout.
            Gemm::new(rows, g, u)
                .trans_b()
                .run(&self.dz_step, recurrent, &mut self.dh_step, false);
            if !self.recurrent_keep.is_empty() {
                for (d, &k) in self.dh_step.iter_mut().zip(&self.recurrent_keep) {
                    *d *= k;
                }
            }
            for (a, &b) in dh.iter_mut().zip(&self.dh_step) {
                *a += b;
            }
        }
        // What is left is the gradient of the starting state (`initial_state_grads`).
        self.h = dh;
        self.c = dc;

        let x_used: &[f32] = if self.input_dropout_active() {
            &self.x_dropped
        } else {
            x
        };
        let (kernel_param, rest) = params.split_at_mut(1);
        let (recurrent_param, bias_param) = rest.split_at_mut(1);
        // dW = xᵀ·dz_input, dU = h_inᵀ·dz_recurrent: one GEMM each over all steps.
        Gemm::new(f, n, g).trans_a().run(
            x_used,
            &self.dz_input,
            kernel_param[0].grad_slice_mut(),
            false,
        );
        Gemm::new(u, n, g).trans_a().run(
            &self.h_in,
            &self.dz_recurrent,
            recurrent_param[0].grad_slice_mut(),
            false,
        );
        if let Some(b) = bias_param.first_mut() {
            let grad = b.grad_slice_mut();
            grad.fill(0.0);
            for row in self.dz_input.chunks(g) {
                for (a, &v) in grad[..g].iter_mut().zip(row) {
                    *a += v;
                }
            }
            if spec.cell.kind == CellKind::Gru {
                for row in self.dz_recurrent.chunks(g) {
                    for (a, &v) in grad[g..2 * g].iter_mut().zip(row) {
                        *a += v;
                    }
                }
            }
        }
        if let Some(dx) = dx {
            Gemm::new(n, g, f).trans_b().run(
                &self.dz_input,
                kernel_param[0].value_slice(),
                dx,
                false,
            );
            if self.input_dropout_active() {
                for (r, d) in dx.chunks_mut(t_len * f).enumerate() {
                    let keep = &self.input_keep[r * f..(r + 1) * f];
                    for dr in d.chunks_mut(f) {
                        for (v, &k) in dr.iter_mut().zip(keep) {
                            *v *= k;
                        }
                    }
                }
            }
        }
    }
}
