//! The three recurrent cells' per-step arithmetic for one sample: the gate
//! nonlinearities and state update in forward, and their derivatives in backward.
//! The matrix products around them (input and recurrent projections) are in `rnn.rs`.
//!
//! Gate blocks follow Keras's weight layout: SimpleRNN [a], LSTM [i, f, c, o],
//! GRU [z, r, h] (reset_after: the candidate's recurrent part is multiplied by r
//! after its matrix product, with its own recurrent bias).

use crate::activation::Activation;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    Simple,
    Lstm,
    Gru,
}

impl CellKind {
    pub fn gates(self) -> usize {
        match self {
            CellKind::Simple => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    pub fn has_cell_state(self) -> bool {
        self == CellKind::Lstm
    }
}

#[derive(Clone, Copy)]
pub struct Cell {
    pub kind: CellKind,
    pub units: usize,
    pub activation: Activation,
    pub recurrent_activation: Activation,
}

/// One sample's values at one step, as forward leaves them for backward.
pub struct StepForward<'a> {
    /// In: input projection (x·W + input bias). Out: each gate's pre-activation.
    pub z: &'a mut [f32],
    /// Out: each gate's activation.
    pub a: &'a mut [f32],
    /// Recurrent projection h_prev·U (+ recurrent bias for GRU).
    pub zh: &'a [f32],
    pub h_prev: &'a [f32],
    pub c_prev: &'a [f32],
    /// Out (GRU): the candidate's recurrent projection, needed for r's gradient.
    pub zh_candidate: &'a mut [f32],
    /// Out (LSTM): activation(c_new).
    pub c_act: &'a mut [f32],
    pub h_new: &'a mut [f32],
    pub c_new: &'a mut [f32],
}

/// One sample's gradients at one step.
pub struct StepBackward<'a> {
    pub z: &'a [f32],
    pub a: &'a [f32],
    pub h_prev: &'a [f32],
    pub c_prev: &'a [f32],
    pub zh_candidate: &'a [f32],
    pub c_act: &'a [f32],
    /// In: dL/dh_new. Out (GRU): the part of dL/dh_prev that skips the recurrent kernel.
    pub dh: &'a mut [f32],
    /// In: dL/dc_new. Out: dL/dc_prev.
    pub dc: &'a mut [f32],
    /// Out: gradient of the input projection's gates.
    pub dz_input: &'a mut [f32],
    /// Out: gradient of the recurrent projection's gates.
    pub dz_recurrent: &'a mut [f32],
}

/// a[i] += b[i].
#[inline(always)]
fn add(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(x, &y)| *x += y);
}

/// Splits a gate-major row into its `N` blocks of `units`.
fn blocks<const N: usize>(row: &[f32], units: usize) -> [&[f32]; N] {
    std::array::from_fn(|k| &row[k * units..(k + 1) * units])
}

fn blocks_mut<const N: usize>(row: &mut [f32], units: usize) -> [&mut [f32]; N] {
    let mut rest = row;
    std::array::from_fn(|_| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(units);
        rest = tail;
        head
    })
}

// Each step is written as whole-slice loops (no per-element dispatch) so they
// vectorise; on CPUs with AVX2 the same code is compiled 8 lanes wide. The
// arithmetic is the same (no FMA contraction), so the results are too.
impl Cell {
    pub fn forward(&self, s: StepForward<'_>) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports the feature the wide version is compiled for.
                return unsafe { self.forward_avx2(s) };
            }
        }
        self.forward_any(s)
    }

    pub fn backward(&self, s: StepBackward<'_>, scratch: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                return unsafe { self.backward_avx2(s, scratch) };
            }
        }
        self.backward_any(s, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn forward_avx2(&self, s: StepForward<'_>) {
        self.forward_any(s)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn backward_avx2(&self, s: StepBackward<'_>, scratch: &mut [f32]) {
        self.backward_any(s, scratch)
    }

    #[inline(always)]
    fn forward_any(&self, s: StepForward<'_>) {
        let u = self.units;
        let (act, ract) = (self.activation, self.recurrent_activation);
        match self.kind {
            CellKind::Simple => {
                add(s.z, s.zh);
                act.map_slice(s.z, s.a);
                s.h_new.copy_from_slice(s.a);
            }
            CellKind::Lstm => {
                add(s.z, s.zh);
                let [zi, zf, zc, zo] = blocks::<4>(s.z, u);
                let [i, f, g, o] = blocks_mut::<4>(s.a, u);
                ract.map_slice(zi, i);
                ract.map_slice(zf, f);
                act.map_slice(zc, g);
                ract.map_slice(zo, o);
                for (((c, &cp), (&fv, &iv)), &gv) in s
                    .c_new
                    .iter_mut()
                    .zip(s.c_prev)
                    .zip(f.iter().zip(&*i))
                    .zip(&*g)
                {
                    *c = fv * cp + iv * gv;
                }
                act.map_slice(s.c_new, s.c_act);
                for ((h, &ov), &ca) in s.h_new.iter_mut().zip(&*o).zip(&*s.c_act) {
                    *h = ov * ca;
                }
            }
            CellKind::Gru => {
                add(&mut s.z[..2 * u], &s.zh[..2 * u]);
                let [_, _, zh_h] = blocks::<3>(s.zh, u);
                let [zz, zr, zhh] = blocks_mut::<3>(s.z, u);
                let [a_z, a_r, a_h] = blocks_mut::<3>(s.a, u);
                ract.map_slice(zz, a_z);
                ract.map_slice(zr, a_r);
                s.zh_candidate.copy_from_slice(zh_h);
                for ((z, &r), &zc) in zhh.iter_mut().zip(&*a_r).zip(zh_h) {
                    *z += r * zc;
                }
                act.map_slice(zhh, a_h);
                for (((h, &zg), &hp), &hh) in s.h_new.iter_mut().zip(&*a_z).zip(s.h_prev).zip(&*a_h)
                {
                    *h = zg * hp + (1.0 - zg) * hh;
                }
            }
        }
    }

    /// `scratch` holds at least 2·units values.
    #[inline(always)]
    fn backward_any(&self, s: StepBackward<'_>, scratch: &mut [f32]) {
        let u = self.units;
        let (act, ract) = (self.activation, self.recurrent_activation);
        match self.kind {
            CellKind::Simple => {
                s.dz_input.copy_from_slice(s.dh);
                act.scale_by_derivative(s.z, s.a, s.dz_input);
                s.dz_recurrent.copy_from_slice(s.dz_input);
                s.dh.fill(0.0);
            }
            CellKind::Lstm => {
                let [i, f, g, o] = blocks::<4>(s.a, u);
                let [zi, zf, zc, zo] = blocks::<4>(s.z, u);
                let (c, dc_out) = scratch[..2 * u].split_at_mut(u);
                for (((cv, &cp), (&fv, &iv)), &gv) in
                    c.iter_mut().zip(s.c_prev).zip(f.iter().zip(i)).zip(g)
                {
                    *cv = fv * cp + iv * gv;
                }
                // dc_total = dc + dh·o·act'(c)
                for ((d, &dh), &ov) in dc_out.iter_mut().zip(&*s.dh).zip(o) {
                    *d = dh * ov;
                }
                act.scale_by_derivative(c, s.c_act, dc_out);
                add(dc_out, s.dc);
                let [di, df, dg, d_o] = blocks_mut::<4>(s.dz_input, u);
                for ((((di, df), dg), (&dc, &cp)), (&iv, &gv)) in di
                    .iter_mut()
                    .zip(df.iter_mut())
                    .zip(dg.iter_mut())
                    .zip(dc_out.iter().zip(s.c_prev))
                    .zip(i.iter().zip(g))
                {
                    *di = dc * gv;
                    *df = dc * cp;
                    *dg = dc * iv;
                }
                for ((d, &dh), &ca) in d_o.iter_mut().zip(&*s.dh).zip(s.c_act) {
                    *d = dh * ca;
                }
                ract.scale_by_derivative(zi, i, di);
                ract.scale_by_derivative(zf, f, df);
                act.scale_by_derivative(zc, g, dg);
                ract.scale_by_derivative(zo, o, d_o);
                s.dz_recurrent.copy_from_slice(s.dz_input);
                for ((d, &dc), &fv) in s.dc.iter_mut().zip(&*dc_out).zip(f) {
                    *d = dc * fv;
                }
                s.dh.fill(0.0);
            }
            CellKind::Gru => {
                let [a_z, a_r, a_h] = blocks::<3>(s.a, u);
                let [zz, zr, zhh] = blocks::<3>(s.z, u);
                let [d_z, d_r, d_h] = blocks_mut::<3>(s.dz_input, u);
                for ((((dz, dhh), &dh), (&zg, &hh)), &hp) in d_z
                    .iter_mut()
                    .zip(d_h.iter_mut())
                    .zip(&*s.dh)
                    .zip(a_z.iter().zip(a_h))
                    .zip(s.h_prev)
                {
                    *dhh = dh * (1.0 - zg);
                    *dz = dh * (hp - hh);
                }
                act.scale_by_derivative(zhh, a_h, d_h);
                ract.scale_by_derivative(zz, a_z, d_z);
                for ((dr, &dhh), &zc) in d_r.iter_mut().zip(&*d_h).zip(s.zh_candidate) {
                    *dr = dhh * zc;
                }
                ract.scale_by_derivative(zr, a_r, d_r);
                let [r_z, r_r, r_h] = blocks_mut::<3>(s.dz_recurrent, u);
                r_z.copy_from_slice(d_z);
                r_r.copy_from_slice(d_r);
                for ((o, &dhh), &r) in r_h.iter_mut().zip(&*d_h).zip(a_r) {
                    *o = dhh * r;
                }
                for (dh, &zg) in s.dh.iter_mut().zip(a_z) {
                    *dh *= zg;
                }
            }
        }
    }
}
