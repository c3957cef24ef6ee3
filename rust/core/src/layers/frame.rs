//! ZeroPadding2D and Cropping2D (channels last): the image is copied into a
//! larger zero frame, or a smaller window of it is kept. Both are one copy of
//! a rectangle between input and output at an offset, and its reverse in backward.

use super::window::image_shape;
use super::{field, Ctx, Layer};
use crate::error::{Error, Result};
use serde_json::Value;

pub struct Frame {
    /// ZeroPadding2D adds the margins; Cropping2D removes them.
    pad: bool,
    input: (usize, usize),
    channels: usize,
    /// Top and left margins.
    offset: (usize, usize),
    /// The copied rectangle: the input (padding) or the output (cropping).
    inner: (usize, usize),
    output_shape: Vec<usize>,
}

/// ((top, bottom), (left, right)) from `config[key]`.
fn margins(config: &Value, name: &str, key: &str) -> Result<[[usize; 2]; 2]> {
    let bad = || {
        Error(format!(
            "{name}: '{key}' must be ((top, bottom), (left, right)) non-negative integers, got {}",
            field(config, key)
        ))
    };
    let outer = field(config, key).as_array().ok_or_else(bad)?;
    let mut out = [[0usize; 2]; 2];
    if outer.len() != 2 {
        return Err(bad());
    }
    for (o, pair) in out.iter_mut().zip(outer) {
        let pair = pair.as_array().filter(|p| p.len() == 2).ok_or_else(bad)?;
        for (v, p) in o.iter_mut().zip(pair) {
            *v = p.as_u64().ok_or_else(bad)? as usize;
        }
    }
    Ok(out)
}

impl Frame {
    pub fn build(name: &str, config: &Value, input_shape: &[usize], pad: bool) -> Result<Self> {
        let (h, w, channels) = image_shape(name, input_shape)?;
        let key = if pad { "padding" } else { "cropping" };
        let [[t, b], [l, r]] = margins(config, name, key)?;
        let (oh, ow) = if pad {
            (h + t + b, w + l + r)
        } else {
            if t + b >= h || l + r >= w {
                return Err(Error(format!(
                    "{name}: cropping (({t}, {b}), ({l}, {r})) leaves nothing of an input of \
                     height {h} and width {w} (per-sample shape {input_shape:?})"
                )));
            }
            (h - t - b, w - l - r)
        };
        Ok(Frame {
            pad,
            input: (h, w),
            channels,
            offset: (t, l),
            inner: if pad { (h, w) } else { (oh, ow) },
            output_shape: vec![oh, ow, channels],
        })
    }

    /// (offset in the small image, offset in the big one, length) of each row of
    /// the copied rectangle; the big image is the one with the margins.
    fn rect_rows(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let c = self.channels;
        let big_w = if self.pad {
            self.output_shape[1]
        } else {
            self.input.1
        };
        let ((t, l), (ih, iw)) = (self.offset, self.inner);
        (0..ih).map(move |row| (row * iw * c, ((t + row) * big_w + l) * c, iw * c))
    }

    fn sizes(&self) -> (usize, usize) {
        (
            self.input.0 * self.input.1 * self.channels,
            self.output_shape.iter().product(),
        )
    }

    /// from (input-shaped when `forward`) → to, per sample.
    fn run(&self, from: &[f32], to: &mut [f32], forward: bool) {
        let (xs, ys) = self.sizes();
        let (fs, ts) = if forward { (xs, ys) } else { (ys, xs) };
        // Padding forward and cropping backward write into the bigger image.
        let into_big = self.pad == forward;
        for (f, t) in from.chunks_exact(fs).zip(to.chunks_exact_mut(ts)) {
            if into_big {
                t.fill(0.0);
            }
            for (small, big, len) in self.rect_rows() {
                let (src, dst) = if into_big { (small, big) } else { (big, small) };
                t[dst..][..len].copy_from_slice(&f[src..][..len]);
            }
        }
    }
}

impl Layer for Frame {
    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn forward(&mut self, x: &[f32], y: &mut [f32], _rows: usize, _ctx: &Ctx) {
        self.run(x, y, true);
    }

    fn backward(
        &mut self,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _rows: usize,
    ) {
        if let Some(dx) = dx {
            self.run(dy, dx, false);
        }
    }
}
