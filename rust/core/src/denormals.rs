//! Denormal (subnormal) floats flushed to zero on the engine's threads, as
//! TensorFlow's CPU threads do.
//!
//! Training makes them: the Adam moments of a weight whose gradient stops (a
//! dead ReLU unit) decay by β each step through the subnormal range, and x86
//! cores take microcode assists on subnormal operands, tens of times slower
//! than normal arithmetic. With flush-to-zero (results) and denormals-are-zero
//! (inputs) set, such values are 0 instead: a difference below 1.2e-38 in
//! magnitude, the same on every run and thread count.
//!
//! Pool threads set the mode when they start. Work run on the caller's thread
//! sets it for the call only (`on_this_thread`), so the caller's own floating
//! point (NumPy in the same thread) keeps IEEE subnormals.

/// Runs `f` with subnormals flushed on this thread, then restores the thread's mode.
pub fn on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    let saved = mode::get();
    mode::set(saved | mode::FLUSH);
    // Restored even if `f` panics (the caller catches panics).
    struct Restore(mode::Bits);
    impl Drop for Restore {
        fn drop(&mut self) {
            mode::set(self.0);
        }
    }
    let _restore = Restore(saved);
    f()
}

/// Flushes subnormals on this thread from now on (the pool's threads, at start).
pub fn flush_on_this_thread() {
    mode::set(mode::get() | mode::FLUSH);
}

#[cfg(target_arch = "x86_64")]
mod mode {
    pub type Bits = u32;
    /// MXCSR: flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    pub const FLUSH: Bits = 0x8040;

    pub fn get() -> Bits {
        let mut bits: Bits = 0;
        // SAFETY: stmxcsr only stores the SSE control register into `bits`.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut bits, options(nostack)) };
        bits
    }

    pub fn set(bits: Bits) {
        // SAFETY: ldmxcsr loads a value read from the register with mode bits
        // added; no exception is unmasked.
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &bits, options(nostack)) };
    }
}

#[cfg(target_arch = "aarch64")]
mod mode {
    pub type Bits = u64;
    /// FPCR.FZ: flush subnormal inputs and results to zero.
    pub const FLUSH: Bits = 1 << 24;

    pub fn get() -> Bits {
        let bits: Bits;
        // SAFETY: reads the floating-point control register.
        unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) bits, options(nomem, nostack)) };
        bits
    }

    pub fn set(bits: Bits) {
        // SAFETY: writes back the control register with the FZ bit changed only.
        unsafe { std::arch::asm!("msr fpcr, {}", in(reg) bits, options(nomem, nostack)) };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod mode {
    pub type Bits = u32;
    pub const FLUSH: Bits = 0;

    pub fn get() -> Bits {
        0
    }

    pub fn set(_bits: Bits) {}
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// 1e-30 · 1e-10 = 1e-40, a subnormal.
    fn tiny_product() -> f32 {
        black_box(1e-30f32) * black_box(1e-10f32)
    }

    #[test]
    fn flushes_inside_and_restores_after() {
        assert!(tiny_product() > 0.0, "IEEE subnormals before");
        assert_eq!(on_this_thread(tiny_product), 0.0);
        assert!(tiny_product() > 0.0, "the thread's mode is restored");
        let in_pool = crate::parallel::install(tiny_product);
        assert_eq!(in_pool, 0.0, "pool threads flush");
    }
}
