//! GlobalAveragePooling1D/2D and GlobalMaxPooling1D/2D (channels last): the
//! mean or maximum of each channel over all positions of a sample.

use super::pool2d::PoolKind;
use super::{field, Ctx, Layer};
use crate::error::{Error, Result};
use serde_json::Value;

pub struct GlobalPool {
    kind: PoolKind,
    positions: usize,
    channels: usize,
    output_shape: Vec<usize>,
    /// For max: the winning position of each (sample, channel) in the last forward.
    winners: Vec<u32>,
}

impl GlobalPool {
    /// `spatial` is 1 or 2: the number of axes pooled away.
    pub fn build(
        name: &str,
        config: &Value,
        input_shape: &[usize],
        kind: PoolKind,
        spatial: usize,
    ) -> Result<Self> {
        if input_shape.len() != spatial + 1 {
            let axes = if spatial == 1 {
                "(batch, steps, channels)"
            } else {
                "(batch, height, width, channels)"
            };
            return Err(Error(format!(
                "{name}: expected inputs of rank {} {axes}, got per-sample shape {input_shape:?}",
                spatial + 2
            )));
        }
        let channels = input_shape[spatial];
        let keepdims = field(config, "keepdims").as_bool().unwrap_or(false);
        let output_shape = if keepdims {
            let mut s = vec![1; spatial];
            s.push(channels);
            s
        } else {
            vec![channels]
        };
        Ok(GlobalPool {
            kind,
            positions: input_shape[..spatial].iter().product(),
            channels,
            output_shape,
            winners: Vec::new(),
        })
    }
}

impl Layer for GlobalPool {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx) {
        let c = self.channels;
        let sample = self.positions * c;
        self.winners.resize(y.len(), 0);
        for ((xs, ys), ws) in x
            .chunks_exact(sample)
            .zip(y.chunks_exact_mut(c))
            .zip(self.winners.chunks_exact_mut(c))
        {
            match self.kind {
                PoolKind::Average => {
                    ys.fill(0.0);
                    for pos in xs.chunks_exact(c) {
                        ys.iter_mut().zip(pos).for_each(|(a, &v)| *a += v);
                    }
                    let n = self.positions as f32;
                    ys.iter_mut().for_each(|v| *v /= n);
                }
                PoolKind::Max => {
                    ys.copy_from_slice(&xs[..c]);
                    ws.fill(0);
                    // Strictly greater: the first maximum wins, as MaxPooling2D.
                    for (p, pos) in xs.chunks_exact(c).enumerate().skip(1) {
                        for ((a, w), &v) in ys.iter_mut().zip(ws.iter_mut()).zip(pos) {
                            if v > *a {
                                *a = v;
                                *w = p as u32;
                            }
                        }
                    }
                }
            }
        }
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        let Some(dx) = dx else { return };
        let c = self.channels;
        let sample = self.positions * c;
        for ((ds, gs), ws) in dx
            .chunks_exact_mut(sample)
            .zip(dy.chunks_exact(c))
            .zip(self.winners.chunks_exact(c))
        {
            match self.kind {
                PoolKind::Average => {
                    let n = self.positions as f32;
                    for pos in ds.chunks_exact_mut(c) {
                        pos.iter_mut().zip(gs).for_each(|(d, &g)| *d = g / n);
                    }
                }
                PoolKind::Max => {
                    ds.fill(0.0);
                    for (ch, (&w, &g)) in ws.iter().zip(gs).enumerate() {
                        ds[w as usize * c + ch] = g;
                    }
                }
            }
        }
    }
}
