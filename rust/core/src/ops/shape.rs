//! Stub.
use super::{Op, Operand};
use crate::error::Result;
use serde_json::Value;

pub(super) fn build(
    _name: &str,
    _attrs: &Value,
    _inputs: &[Operand],
) -> Option<Result<Box<dyn Op>>> {
    None
}
