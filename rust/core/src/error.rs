//! One error type for the engine: a message meant for the user.

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Error(pub String);

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(format!("invalid spec: {e}"))
    }
}

/// `bail!("...")` returns an `Error` built with `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error(format!($($arg)*))) };
}

/// Splits a component spec into its name and arguments: a spec is either a name
/// (`"relu"`) or an object with a `"name"` and arguments (`{"name": "elu", "alpha": 1}`).
/// `what` ("loss", "metric", ...) goes into the error message.
pub fn split_spec<'a>(spec: &'a Value, what: &str) -> Result<(&'a str, &'a Value)> {
    match spec {
        Value::String(s) => Ok((s.as_str(), &Value::Null)),
        Value::Object(o) => o
            .get("name")
            .and_then(Value::as_str)
            .map(|name| (name, spec))
            .ok_or_else(|| Error(format!("{what} spec needs a 'name', got {spec}"))),
        other => Err(Error(format!("invalid {what} spec {other}"))),
    }
}
