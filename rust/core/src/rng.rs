//! Counter-based random numbers.
//!
//! Every draw is a pure function of (seed, stream, counter), so results do not
//! depend on thread scheduling or on how work is split: a dropout mask element,
//! an initial weight or a shuffle swap is keyed by where it is used, not by how
//! many numbers were drawn before it.

/// SplitMix64's finaliser: a strong 64-bit mixing function.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A key for one stream of random numbers, e.g. (seed, layer, step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(u64);

impl Key {
    pub fn new(seed: u64) -> Self {
        Key(mix64(seed ^ 0x9e37_79b9_7f4a_7c15))
    }

    /// A derived key for a sub-stream (a layer, a parameter, a step, an epoch).
    pub fn fold(self, data: u64) -> Self {
        Key(mix64(
            self.0 ^ mix64(data.wrapping_add(0x632b_e59b_d9b4_e019)),
        ))
    }

    /// The `counter`-th 64 random bits of this stream.
    #[inline]
    pub fn bits(self, counter: u64) -> u64 {
        mix64(
            mix64(
                self.0
                    .wrapping_add(counter.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            ) ^ self.0,
        )
    }

    /// Uniform in [0, 1) with 24 bits of precision (exact in f32).
    #[inline]
    pub fn uniform_f32(self, counter: u64) -> f32 {
        (self.bits(counter) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [0, 1) with 53 bits.
    #[inline]
    pub fn uniform_f64(self, counter: u64) -> f64 {
        (self.bits(counter) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box-Muller over two independent uniforms).
    pub fn normal_f64(self, counter: u64) -> f64 {
        let u1 = 1.0 - self.uniform_f64(2 * counter); // (0, 1]: log is finite
        let u2 = self.uniform_f64(2 * counter + 1);
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in [0, n) (Lemire's multiply-shift; bias < 2^-32 for our sizes).
    #[inline]
    pub fn below(self, counter: u64, n: u64) -> u64 {
        ((self.bits(counter) as u128 * n as u128) >> 64) as u64
    }
}

/// A permutation of 0..n (Fisher-Yates driven by the key's counters).
pub fn permutation(key: Key, n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = key.below(i as u64, i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_keyed() {
        let a = Key::new(7).fold(1);
        let b = Key::new(7).fold(2);
        assert_eq!(a.bits(3), Key::new(7).fold(1).bits(3));
        assert_ne!(a.bits(3), b.bits(3));
        assert_ne!(a.bits(3), a.bits(4));
    }

    #[test]
    fn uniform_moments() {
        let k = Key::new(1);
        let n = 200_000;
        let mean: f64 = (0..n).map(|i| k.uniform_f64(i)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
        let m2: f64 = (0..n).map(|i| k.normal_f64(i).powi(2)).sum::<f64>() / n as f64;
        assert!((m2 - 1.0).abs() < 0.02, "{m2}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = permutation(Key::new(3), 1000);
        assert_ne!(p[..10], (0..10).collect::<Vec<u32>>()[..]);
        p.sort();
        assert_eq!(p, (0..1000).collect::<Vec<u32>>());
    }
}
