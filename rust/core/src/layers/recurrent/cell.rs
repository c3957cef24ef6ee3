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

impl Cell {
    pub fn forward(&self, s: StepForward<'_>) {
        let u = self.units;
        let (act, ract) = (self.activation, self.recurrent_activation);
        match self.kind {
            CellKind::Simple => {
                for j in 0..u {
                    s.z[j] += s.zh[j];
                    s.a[j] = act.scalar(s.z[j]);
                    s.h_new[j] = s.a[j];
                }
            }
            CellKind::Lstm => {
                for (z, &zh) in s.z.iter_mut().zip(s.zh) {
                    *z += zh;
                }
                for j in 0..u {
                    let i = ract.scalar(s.z[j]);
                    let f = ract.scalar(s.z[u + j]);
                    let g = act.scalar(s.z[2 * u + j]);
                    let o = ract.scalar(s.z[3 * u + j]);
                    let c = f * s.c_prev[j] + i * g;
                    let ca = act.scalar(c);
                    s.a[j] = i;
                    s.a[u + j] = f;
                    s.a[2 * u + j] = g;
                    s.a[3 * u + j] = o;
                    s.c_new[j] = c;
                    s.c_act[j] = ca;
                    s.h_new[j] = o * ca;
                }
            }
            CellKind::Gru => {
                for j in 0..u {
                    s.z[j] += s.zh[j];
                    s.z[u + j] += s.zh[u + j];
                    let zg = ract.scalar(s.z[j]);
                    let r = ract.scalar(s.z[u + j]);
                    let zc = s.zh[2 * u + j];
                    s.zh_candidate[j] = zc;
                    s.z[2 * u + j] += r * zc;
                    let hh = act.scalar(s.z[2 * u + j]);
                    s.a[j] = zg;
                    s.a[u + j] = r;
                    s.a[2 * u + j] = hh;
                    s.h_new[j] = zg * s.h_prev[j] + (1.0 - zg) * hh;
                }
            }
        }
    }

    pub fn backward(&self, s: StepBackward<'_>) {
        let u = self.units;
        let (act, ract) = (self.activation, self.recurrent_activation);
        match self.kind {
            CellKind::Simple => {
                for j in 0..u {
                    let d = s.dh[j] * act.derivative(s.z[j], s.a[j]);
                    s.dz_input[j] = d;
                    s.dz_recurrent[j] = d;
                    s.dh[j] = 0.0;
                }
            }
            CellKind::Lstm => {
                for j in 0..u {
                    let (i, f, g, o) = (s.a[j], s.a[u + j], s.a[2 * u + j], s.a[3 * u + j]);
                    let c = f * s.c_prev[j] + i * g;
                    let ca = s.c_act[j];
                    let dh = s.dh[j];
                    let dc = s.dc[j] + dh * o * act.derivative(c, ca);
                    let d_i = dc * g * ract.derivative(s.z[j], i);
                    let d_f = dc * s.c_prev[j] * ract.derivative(s.z[u + j], f);
                    let d_g = dc * i * act.derivative(s.z[2 * u + j], g);
                    let d_o = dh * ca * ract.derivative(s.z[3 * u + j], o);
                    for (gate, d) in [d_i, d_f, d_g, d_o].into_iter().enumerate() {
                        s.dz_input[gate * u + j] = d;
                        s.dz_recurrent[gate * u + j] = d;
                    }
                    s.dc[j] = dc * f;
                    s.dh[j] = 0.0;
                }
            }
            CellKind::Gru => {
                for j in 0..u {
                    let (zg, r, hh) = (s.a[j], s.a[u + j], s.a[2 * u + j]);
                    let dh = s.dh[j];
                    let d_hh = dh * (1.0 - zg) * act.derivative(s.z[2 * u + j], hh);
                    let d_z = dh * (s.h_prev[j] - hh) * ract.derivative(s.z[j], zg);
                    let d_r = d_hh * s.zh_candidate[j] * ract.derivative(s.z[u + j], r);
                    s.dz_input[j] = d_z;
                    s.dz_input[u + j] = d_r;
                    s.dz_input[2 * u + j] = d_hh;
                    s.dz_recurrent[j] = d_z;
                    s.dz_recurrent[u + j] = d_r;
                    s.dz_recurrent[2 * u + j] = d_hh * r;
                    s.dh[j] = dh * zg;
                }
            }
        }
    }
}
