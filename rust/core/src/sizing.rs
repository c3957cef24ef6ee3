//! One place that sizes everything the engine allocates: element counts are
//! multiplied with checked arithmetic and byte sizes compared with a limit
//! *before* the allocation, because a failed allocation aborts the process
//! (it is not a panic, so nothing downstream could catch it).
//!
//! The limit is the machine's physical memory: the Python package sets it at
//! import (`set_limit`); until then (Rust callers) it is what a slice may address.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};

static LIMIT: AtomicU64 = AtomicU64::new(isize::MAX as u64);

/// Bytes any one allocation, one model's weights or one batch's buffers may take.
pub fn limit() -> u64 {
    LIMIT.load(Ordering::Relaxed)
}

/// Sets the limit (bytes); 0 restores the default.
pub fn set_limit(bytes: u64) {
    let bytes = if bytes == 0 {
        isize::MAX as u64
    } else {
        bytes.min(isize::MAX as u64)
    };
    LIMIT.store(bytes, Ordering::Relaxed);
}

/// The product of `dims`, or None when it overflows.
pub fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// A byte count as people read it ("1.5 GB").
pub fn human(bytes: u128) -> String {
    const UNITS: [&str; 9] = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Elements of a tensor of `shape` that `what` ("Dense 'd': kernel") needs
/// `copies` f32 buffers of (a weight and its gradient: 2), after checking that
/// they fit the limit together with `already` bytes held.
pub fn tensor(what: &str, shape: &[usize], copies: u64, already: u64) -> Result<usize> {
    let elements: u128 = shape.iter().map(|&d| d as u128).product();
    let bytes = elements
        .saturating_mul(4)
        .saturating_mul(copies.max(1) as u128);
    let total = bytes.saturating_add(already as u128);
    if elements > usize::MAX as u128 || total > limit() as u128 {
        let held = if already > 0 {
            format!(" on top of the {} already held", human(already as u128))
        } else {
            String::new()
        };
        return Err(Error(format!(
            "{what} of shape {shape:?} needs {} ({elements} values{}){held}, more than the \
             {} this machine can give (its memory); use smaller sizes",
            human(bytes),
            if copies > 1 {
                format!(" x {copies} buffers")
            } else {
                String::new()
            },
            human(limit() as u128),
        )));
    }
    Ok(elements as usize)
}

/// `product(shape)` for a shape that `what` declares; an error when it overflows
/// or the values would not fit in memory (a per-sample shape from a spec).
pub fn shape(what: &str, shape: &[usize]) -> Result<usize> {
    tensor(what, shape, 1, 0)
}

/// Bytes of `elements` f32 values, saturating (for running totals).
pub fn bytes_of(elements: usize) -> u64 {
    (elements as u64).saturating_mul(4)
}

/// What is being built while a model builds its layers: the layer (for messages),
/// the bytes its earlier layers' weights already hold (values and gradients), and
/// the bytes of weight values the source allows (a file: the tensors it holds).
struct Building {
    layer: String,
    held: u64,
    budget: Option<u64>,
}

thread_local! {
    static BUILDING: std::cell::RefCell<Option<Building>> = const { std::cell::RefCell::new(None) };
}

/// Runs `build` (one layer's construction) with its weights counted against the
/// limit together with `held` bytes, their values against `budget` if any, and
/// named after `layer` in errors. Returns what `build` returned and the bytes
/// held afterwards.
pub fn building<T>(
    layer: String,
    held: u64,
    budget: Option<u64>,
    build: impl FnOnce() -> Result<T>,
) -> (Result<T>, u64) {
    let context = Building {
        layer,
        held,
        budget,
    };
    let previous = BUILDING.with(|b| b.replace(Some(context)));
    let out = build();
    let held = BUILDING.with(|b| b.replace(previous)).map_or(0, |b| b.held);
    (out, held)
}

/// Checks a new weight `name` of `shape` (its value and gradient) against the
/// limit and, inside `building`, against the budget, and counts it as held;
/// returns its element count.
pub fn weight(name: &str, shape: &[usize]) -> Result<usize> {
    BUILDING.with(|b| {
        let mut b = b.borrow_mut();
        let Some(ctx) = b.as_mut() else {
            return tensor(&format!("weight '{name}'"), shape, 2, 0);
        };
        let what = format!("{}: weight '{name}'", ctx.layer);
        let n = tensor(&what, shape, 2, ctx.held)?;
        let held = ctx.held.saturating_add(bytes_of(n).saturating_mul(2));
        if let Some(budget) = ctx.budget {
            if held / 2 > budget {
                return Err(Error(format!(
                    "{what} of shape {shape:?} would bring the weights to {}, but the file \
                     holds only {} of tensors: its architecture does not match its weights",
                    human((held / 2) as u128),
                    human(budget as u128)
                )));
            }
        }
        ctx.held = held;
        Ok(n)
    })
}

/// The layer being built, for messages ("Dense 'd'"), if any.
pub fn current_layer() -> Option<String> {
    BUILDING.with(|b| b.borrow().as_ref().map(|c| c.layer.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_detects_overflow() {
        assert_eq!(product(&[2, 3, 4]), Some(24));
        assert_eq!(product(&[]), Some(1));
        assert_eq!(product(&[1 << 32, 1 << 32]), None);
        // 2^62 + 1 times 4 wraps to 4 in unchecked arithmetic
        assert_eq!(product(&[(1 << 62) + 1, 4]), None);
    }

    #[test]
    fn tensor_names_what_shape_and_bytes() {
        let e = tensor("Dense 'big': kernel", &[10_000, 1 << 50], 2, 0).unwrap_err();
        assert!(e.0.contains("Dense 'big': kernel"), "{e}");
        assert!(e.0.contains("[10000, 1125899906842624]"), "{e}");
        assert!(e.0.contains("EB"), "{e}");
        assert_eq!(tensor("x", &[3, 4], 2, 0), Ok(12));
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(12), "12 bytes");
        assert_eq!(human(1_500_000_000), "1.5 GB");
    }
}
