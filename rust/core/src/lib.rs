//! ferrax-core: the engine behind ferrax. Pure Rust, no Python.
//!
//! A model is a stack of layers built from a JSON spec (the same spec a saved
//! model stores). Training runs whole chunks of batches here: gather a batch,
//! forward, loss, backward, optimizer update, with buffers reused between batches.

pub mod activation;
pub mod data;
pub mod denormals;
pub mod error;
pub mod fastmath;
pub mod init;
pub mod interrupt;
pub mod io;
pub mod layers;
pub mod loss;
pub mod matmul;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod optimizer;
pub mod parallel;
pub mod phases;
pub mod regularizer;
pub mod rng;
pub mod schedule;
pub mod short_k;
pub mod sizing;
pub mod small_k;

pub use error::{Error, Result};
