//! Sliding-window geometry shared by convolution and pooling (channels last).

use super::field;
use crate::error::{Error, Result};
use serde_json::Value;

/// Where a window of `kernel` (dilated by `dilation`) sits for each output
/// position along one spatial axis.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Axis {
    pub input: usize,
    pub output: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    /// Padding before the first input element ("same" pads the smaller half first).
    pub pad: usize,
}

/// How a window axis is padded (Keras's `padding` argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Padding {
    /// Only whole windows inside the input.
    Valid,
    /// ceil(input / stride) outputs, the smaller half of the padding first.
    Same,
    /// Conv1D's "causal": all the padding before the input, so an output sees
    /// no later input.
    Causal,
}

impl Axis {
    /// Keras/TensorFlow rules: "valid" keeps whole windows, "same" gives
    /// ceil(input / stride), "causal" pads (span - 1) before the input.
    pub fn new(
        name: &str,
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        padding: Padding,
    ) -> Result<Self> {
        let span = (kernel - 1) * dilation + 1;
        let (output, pad) = match padding {
            Padding::Same => {
                let output = input.div_ceil(stride);
                let total = ((output - 1) * stride + span).saturating_sub(input);
                (output, total / 2)
            }
            Padding::Causal => ((input - 1) / stride + 1, span - 1),
            Padding::Valid => {
                if span > input {
                    return Err(Error(format!(
                        "{name}: the window ({kernel}, dilated to {span}) is larger than the input ({input}) \
                         along a spatial axis; use padding=\"same\" or a smaller kernel"
                    )));
                }
                ((input - span) / stride + 1, 0)
            }
        };
        Ok(Axis {
            input,
            output,
            kernel,
            stride,
            dilation,
            pad,
        })
    }

    /// Input index of kernel tap `k` for output position `o`, if inside the input.
    #[inline]
    pub fn source(&self, o: usize, k: usize) -> Option<usize> {
        (o * self.stride + k * self.dilation)
            .checked_sub(self.pad)
            .filter(|&i| i < self.input)
    }
}

/// A pair of positive integers from `config[key]` (a list of two).
pub(crate) fn pair(config: &Value, name: &str, key: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error(format!(
            "{name}: '{key}' must be two positive integers, got {}",
            field(config, key)
        ))
    };
    let v = field(config, key).as_array().ok_or_else(bad)?;
    match (
        v.first().and_then(Value::as_u64),
        v.get(1).and_then(Value::as_u64),
        v.len(),
    ) {
        (Some(a), Some(b), 2) if a > 0 && b > 0 => Ok((a as usize, b as usize)),
        _ => Err(bad()),
    }
}

/// `config["padding"]`: "valid" (the default) or "same", and "causal" where allowed.
pub(crate) fn padding(config: &Value, name: &str, causal_ok: bool) -> Result<Padding> {
    match field(config, "padding").as_str().unwrap_or("valid") {
        "valid" => Ok(Padding::Valid),
        "same" => Ok(Padding::Same),
        "causal" if causal_ok => Ok(Padding::Causal),
        other => Err(Error(format!(
            "{name}: 'padding' must be \"valid\" or \"same\"{}, got \"{other}\"",
            if causal_ok { " or \"causal\"" } else { "" }
        ))),
    }
}

/// (height, width, channels) of a channels-last image input.
pub(crate) fn image_shape(name: &str, input_shape: &[usize]) -> Result<(usize, usize, usize)> {
    match input_shape {
        &[h, w, c] => Ok((h, w, c)),
        _ => Err(Error(format!(
            "{name}: expected inputs of rank 4 (batch, height, width, channels), got per-sample shape {input_shape:?}"
        ))),
    }
}

/// (steps, channels) of a channels-last sequence input.
pub(crate) fn sequence_shape(name: &str, input_shape: &[usize]) -> Result<(usize, usize)> {
    match input_shape {
        &[steps, c] => Ok((steps, c)),
        _ => Err(Error(format!(
            "{name}: expected inputs of rank 3 (batch, steps, channels), got per-sample shape {input_shape:?}"
        ))),
    }
}
