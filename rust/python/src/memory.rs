//! Giving a dropped model's memory back to the system. glibc keeps what a process
//! frees in its arenas (one per thread that allocated, up to 8 per core) for later
//! use, so RSS stays high after large models are gone; `malloc_trim` hands the free
//! pages back. Measured with benches/memory_return.py (see its docstring): it costs
//! under 1 ms a call, so it runs when a model that held at least `TRIM_FROM` bytes
//! is dropped. Other allocators (macOS, Windows, musl) return memory on their own.

use std::sync::OnceLock;

/// A dropped model this large or larger trims (smaller ones: eager helpers).
const TRIM_FROM: usize = 1 << 20;

/// Whether a drop of `bytes` should trim: FERRAX_MALLOC_TRIM=0 never, =1 always,
/// unset or `auto` from `TRIM_FROM` bytes.
fn wanted(bytes: usize) -> bool {
    static MODE: OnceLock<Option<bool>> = OnceLock::new();
    let mode = MODE.get_or_init(|| match std::env::var("FERRAX_MALLOC_TRIM").as_deref() {
        Ok("0") => Some(false),
        Ok("1") => Some(true),
        _ => None,
    });
    mode.unwrap_or(bytes >= TRIM_FROM)
}

/// Trims the allocator when dropped, if `bytes` (what the owner held) says so.
/// Declared after what it guards in a struct, so it runs once that is freed.
#[derive(Default)]
pub(crate) struct TrimAfterDrop {
    pub(crate) bytes: usize,
}

impl Drop for TrimAfterDrop {
    fn drop(&mut self) {
        if wanted(self.bytes) {
            trim();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim takes no pointers and is safe to call from any thread.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
