//! A max pool taken over by the convolution before it (Conv2D → MaxPooling2D
//! whose windows tile the image, the first block of most small convnets).
//!
//! Unfused, the convolution's output (the largest activation of such a network)
//! is written, read back by the pool, read again by the pool's backward to find
//! each window's winner, written again as a mostly-zero gradient and read by the
//! kernel gradient, and the patch matrix (im2col) is written and read twice.
//! Fused, nothing of that size exists: each sample's patch rows are gathered
//! from its image a band of window rows at a time, the band's convolution rows
//! are computed into a small scratch that stays in L1 and pooled at once, and
//! only the pooled values and each window's winner (one byte) are kept.
//! Backward sends each pooled gradient straight to the kernel gradient through
//! its winner's patch values, read from the image again.
//!
//! The forward values are the unfused ones bit for bit (same product, same
//! epilogue, same first-maximum rule); the kernel gradient sums the same terms
//! in another fixed order, the same for any thread count.

use super::im2col::Patches;
use super::window::Axis;
use super::PoolWindow;
use crate::activation::Activation;
use crate::parallel::PARALLEL_THRESHOLD;
use crate::small_k;
use rayon::prelude::*;

/// Samples per task: partial kernel gradients are kept per task and added in
/// task order, so the split is fixed by the batch size alone.
const SAMPLES_PER_TASK: usize = 4;

/// Shapes of one fused convolution + pool.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvPoolShape {
    /// Convolution output columns (positions per convolution row).
    pub conv_cols: usize,
    /// Patch width (kh·kw·channels) and filters.
    pub width: usize,
    pub filters: usize,
    pub window: PoolWindow,
    /// Pooled rows and columns.
    pub rows: usize,
    pub cols: usize,
}

impl ConvPoolShape {
    fn pooled_size(&self) -> usize {
        self.rows * self.cols * self.filters
    }

    fn window_size(&self) -> usize {
        self.window.rows * self.window.cols
    }

    /// Convolution position (row, column) of entry `w` (row-major) of the window
    /// of pooled position (`qy`, `qx`).
    fn conv_position(&self, qy: usize, qx: usize, w: usize) -> (usize, usize) {
        let (r, c) = (w / self.window.cols, w % self.window.cols);
        (qy * self.window.rows + r, qx * self.window.cols + c)
    }
}

/// Where each patch value of a convolution sits in its input image, so patch
/// rows are read from the image instead of from a stored patch matrix.
pub(crate) struct ImageTaps {
    /// Offset of tap t (kernel row, kernel column, channel) from the window's
    /// origin, in the image as read (padded when the convolution pads).
    taps: Vec<usize>,
    /// The image as read: rows, columns and channels, and where the input sits in it.
    rows: usize,
    cols: usize,
    channels: usize,
    top: usize,
    left: usize,
    input_rows: usize,
    input_cols: usize,
    strides: (usize, usize),
    /// Whether the image as read differs from the input (padding): then each
    /// sample is copied into a zero-padded buffer first.
    padded: bool,
}

impl ImageTaps {
    pub fn new(g: &Patches) -> Self {
        // Rows (columns) the windows reach, from the first padded one.
        let reach = |a: &Axis| (a.output - 1) * a.stride + (a.kernel - 1) * a.dilation + 1;
        let rows = reach(&g.rows).max(g.rows.pad + g.rows.input);
        let cols = reach(&g.cols).max(g.cols.pad + g.cols.input);
        let c = g.channels;
        let mut taps = Vec::with_capacity(g.width());
        for ky in 0..g.rows.kernel {
            for kx in 0..g.cols.kernel {
                let at = (ky * g.rows.dilation * cols + kx * g.cols.dilation) * c;
                taps.extend(at..at + c);
            }
        }
        ImageTaps {
            taps,
            rows,
            cols,
            channels: c,
            top: g.rows.pad,
            left: g.cols.pad,
            input_rows: g.rows.input,
            input_cols: g.cols.input,
            strides: (g.rows.stride, g.cols.stride),
            padded: rows != g.rows.input || cols != g.cols.input,
        }
    }

    fn input_size(&self) -> usize {
        self.input_rows * self.input_cols * self.channels
    }

    /// One sample's image as read: `input` itself, or its zero-padded copy in `buffer`.
    fn sample<'a>(&'a self, input: &'a [f32], buffer: &'a mut Vec<f32>) -> SampleImage<'a> {
        let image = if self.padded {
            let c = self.channels;
            buffer.clear();
            buffer.resize(self.rows * self.cols * c, 0.0);
            for (y, src) in input.chunks_exact(self.input_cols * c).enumerate() {
                let at = ((self.top + y) * self.cols + self.left) * c;
                buffer[at..][..src.len()].copy_from_slice(src);
            }
            &buffer[..]
        } else {
            input
        };
        SampleImage { taps: self, image }
    }
}

/// One sample's image with the taps to read its patch rows.
struct SampleImage<'a> {
    taps: &'a ImageTaps,
    image: &'a [f32],
}

impl SampleImage<'_> {
    /// Offset of the window of convolution position (`oy`, `ox`).
    fn origin(&self, oy: usize, ox: usize) -> usize {
        let t = self.taps;
        (oy * t.strides.0 * t.cols + ox * t.strides.1) * t.channels
    }

    /// The patch row of convolution position (`oy`, `ox`) into `row`.
    #[inline(always)]
    fn patch_row(&self, oy: usize, ox: usize, row: &mut [f32]) {
        let window = &self.image[self.origin(oy, ox)..];
        for (v, &t) in row.iter_mut().zip(&self.taps.taps) {
            *v = window[t];
        }
    }
}

/// The pool half of a fused Conv2D → MaxPooling2D, with the winners it keeps
/// between forward and backward.
pub(crate) struct MaxPoolTail {
    pub shape: ConvPoolShape,
    taps: ImageTaps,
    /// Per pooled value (sample, row, column, filter): the index of its winner in
    /// the window, row-major; the first maximum wins, as in TensorFlow.
    winners: Vec<u8>,
    /// One per task of `SAMPLES_PER_TASK` samples, kept between batches so the
    /// batch loop allocates nothing.
    tasks: Vec<TaskBuffers>,
}

/// A forward task: its index, buffers, and its samples' pooled values and winners.
type TaskOutputs<'a> = (usize, (&'a mut TaskBuffers, (&'a mut [f32], &'a mut [u8])));

#[derive(Default)]
struct TaskBuffers {
    /// Forward: the band being convolved and pooled.
    band: Band,
    /// Backward: the winner table (see `winner_table`).
    table: Vec<f32>,
    /// A zero-padded copy of the sample's image, when the convolution pads.
    image: Vec<f32>,
    /// Backward: this task's share of the kernel gradient.
    partial: Vec<f32>,
}

/// One band of window rows × (pooled columns · window columns) convolution positions.
#[derive(Default)]
struct Band {
    /// Their patch rows, gathered from the image.
    patches: Vec<f32>,
    /// Their convolution outputs (bias and activation applied).
    outputs: Vec<f32>,
}

impl MaxPoolTail {
    /// None when the window has more entries than a byte can index.
    pub fn new(shape: ConvPoolShape, geometry: &Patches) -> Option<Self> {
        (shape.window_size() <= u8::MAX as usize + 1).then(|| MaxPoolTail {
            shape,
            taps: ImageTaps::new(geometry),
            winners: Vec::new(),
            tasks: Vec::new(),
        })
    }

    /// The task buffers for `rows` samples, and how many tasks that is.
    fn tasks_for(&mut self, rows: usize) -> usize {
        let count = rows.div_ceil(SAMPLES_PER_TASK);
        if self.tasks.len() < count {
            self.tasks.resize_with(count, TaskBuffers::default);
        }
        count
    }

    /// y (rows × pooled) = maxpool(activation(conv(images, kernel) + bias)).
    pub fn forward(
        &mut self,
        images: &[f32],
        kernel: &[f32],
        epilogue: impl Fn(&mut [f32]) + Sync,
        y: &mut [f32],
    ) {
        let s = self.shape;
        let pooled = s.pooled_size();
        let rows = y.len() / pooled;
        let count = self.tasks_for(rows);
        self.winners.resize(rows * pooled, 0);
        let (taps, image_size) = (&self.taps, self.taps.input_size());
        let task = |(t, (buffers, (y, winners))): TaskOutputs<'_>| {
            let samples = y.chunks_mut(pooled).zip(winners.chunks_mut(pooled));
            for (i, (y, winners)) in samples.enumerate() {
                let n = t * SAMPLES_PER_TASK + i;
                let TaskBuffers { band, image, .. } = &mut *buffers;
                let image = taps.sample(&images[n * image_size..][..image_size], image);
                forward_sample(&s, &image, kernel, &epilogue, band, y, winners);
            }
        };
        let chunk = SAMPLES_PER_TASK * pooled;
        let (tasks, winners) = (&mut self.tasks[..count], &mut self.winners[..rows * pooled]);
        if parallel(count, y.len()) {
            let outputs = y.par_chunks_mut(chunk).zip(winners.par_chunks_mut(chunk));
            tasks.par_iter_mut().zip(outputs).enumerate().for_each(task);
        } else {
            let outputs = y.chunks_mut(chunk).zip(winners.chunks_mut(chunk));
            tasks.iter_mut().zip(outputs).enumerate().for_each(task);
        }
    }

    /// The kernel gradient from dz, the gradient of the pre-activation at each
    /// pooled value's winner (rows × pooled): Σ patch row of the winner × dz.
    /// Summed per task, then over tasks in order: the same for any thread count.
    pub fn kernel_grad(&mut self, images: &[f32], dz: &[f32], grad: &mut [f32]) {
        let s = self.shape;
        let (k, f, pooled) = (s.width, s.filters, s.pooled_size());
        let rows = dz.len() / pooled;
        let count = self.tasks_for(rows);
        let (taps, image_size, winners) = (&self.taps, self.taps.input_size(), &self.winners);
        let task = |(t, buffers): (usize, &mut TaskBuffers)| {
            let TaskBuffers {
                table,
                image,
                partial,
                ..
            } = buffers;
            partial.clear();
            partial.resize(k * f, 0.0);
            let first = t * SAMPLES_PER_TASK;
            for n in first..(first + SAMPLES_PER_TASK).min(rows) {
                let image = taps.sample(&images[n * image_size..][..image_size], image);
                add_sample_grad(
                    &s,
                    &image,
                    &dz[n * pooled..][..pooled],
                    &winners[n * pooled..][..pooled],
                    partial,
                    table,
                );
            }
        };
        let tasks = &mut self.tasks[..count];
        if parallel(count, dz.len()) {
            tasks.par_iter_mut().enumerate().for_each(task);
        } else {
            tasks.iter_mut().enumerate().for_each(task);
        }
        grad.fill(0.0);
        for task in tasks.iter() {
            grad.iter_mut()
                .zip(&task.partial)
                .for_each(|(g, &p)| *g += p);
        }
    }

    /// Scatters dz at the winners into a dense gradient of the convolution's
    /// output (rows × positions × filters), zero elsewhere: the input gradient
    /// is computed from that as without the pool.
    pub fn scatter(&self, dz: &[f32], positions: usize, dense: &mut [f32]) {
        let s = self.shape;
        let (f, pooled) = (s.filters, s.pooled_size());
        dense.fill(0.0);
        for (n, (g, wins)) in dz
            .chunks_exact(pooled)
            .zip(self.winners.chunks_exact(pooled))
            .enumerate()
        {
            let out = &mut dense[n * positions * f..][..positions * f];
            for qy in 0..s.rows {
                for qx in 0..s.cols {
                    let at = (qy * s.cols + qx) * f;
                    for (j, (&gv, &w)) in g[at..][..f].iter().zip(&wins[at..][..f]).enumerate() {
                        let (oy, ox) = s.conv_position(qy, qx, w as usize);
                        out[(oy * s.conv_cols + ox) * f + j] = gv;
                    }
                }
            }
        }
    }
}

/// grad (width × filters) += the kernel gradient of one sample.
fn add_sample_grad(
    s: &ConvPoolShape,
    image: &SampleImage,
    dz: &[f32],
    winners: &[u8],
    grad: &mut [f32],
    table: &mut Vec<f32>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if s.window_size() <= 8
            && s.filters.is_multiple_of(8)
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            winner_table(s, image, table);
            // SAFETY: the CPU has AVX2 and FMA; the shapes were checked just above.
            return unsafe { add_sample_grad_avx2(s, table, dz, winners, grad) };
        }
    }
    let _ = table;
    add_sample_grad_generic(s, image, dz, winners, grad)
}

/// Any shape, any CPU: for every pooled position and window entry, the
/// filters this entry won get their dz, the others zero, and the kernel
/// gradient takes the outer product of the entry's patch row with that.
fn add_sample_grad_generic(
    s: &ConvPoolShape,
    image: &SampleImage,
    dz: &[f32],
    winners: &[u8],
    grad: &mut [f32],
) {
    let (k, f) = (s.width, s.filters);
    let (mut won, mut wide) = ([0.0f32; small_k::MAX_N], [0u32; small_k::MAX_N]);
    let (won, wide) = (&mut won[..f], &mut wide[..f]);
    let mut patch = [0.0f32; small_k::MAX_K];
    let patch = &mut patch[..k];
    for qy in 0..s.rows {
        for qx in 0..s.cols {
            let at = (qy * s.cols + qx) * f;
            let g = &dz[at..][..f];
            // Winners widened to the lanes of f32, so the selection vectorises.
            wide.iter_mut()
                .zip(&winners[at..][..f])
                .for_each(|(o, &w)| *o = w as u32);
            for w in 0..s.window_size() as u32 {
                for ((o, &gv), &wv) in won.iter_mut().zip(g).zip(wide.iter()) {
                    *o = if wv == w { gv } else { 0.0 };
                }
                let (oy, ox) = s.conv_position(qy, qx, w as usize);
                image.patch_row(oy, ox, patch);
                for (&pv, grad_row) in patch.iter().zip(grad.chunks_exact_mut(f)) {
                    for (gr, &o) in grad_row.iter_mut().zip(won.iter()) {
                        *gr += pv * o;
                    }
                }
            }
        }
    }
}

/// `table[(q·width + t)·8 + w]`: tap `t` of the patch row of window entry `w` of
/// pooled position `q`, so that one vector permute picks, for eight filters at
/// once, the tap of each filter's own winner.
#[cfg(target_arch = "x86_64")]
fn winner_table(s: &ConvPoolShape, image: &SampleImage, table: &mut Vec<f32>) {
    let k = s.width;
    table.clear();
    table.resize(s.rows * s.cols * k * 8, 0.0);
    let taps = &image.taps.taps;
    for qy in 0..s.rows {
        for qx in 0..s.cols {
            let q = qy * s.cols + qx;
            let entries = &mut table[q * k * 8..][..k * 8];
            for w in 0..s.window_size() {
                let (oy, ox) = s.conv_position(qy, qx, w);
                let window = &image.image[image.origin(oy, ox)..];
                for (e, &t) in entries[w..].iter_mut().step_by(8).zip(taps) {
                    *e = window[t];
                }
            }
        }
    }
}

/// Taps handled per pass over the pooled positions: their accumulators (one
/// vector of eight filters each) stay in registers.
#[cfg(target_arch = "x86_64")]
const TAPS_PER_PASS: usize = 9;

/// grad (width × filters) += Σ over pooled positions q of (winner's tap t) × dz,
/// eight filters at a time: the winners' byte indices permute the table's
/// eight entries of tap t into place. Needs filters a multiple of 8 and a
/// window of at most 8 entries.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_sample_grad_avx2(
    s: &ConvPoolShape,
    table: &[f32],
    dz: &[f32],
    winners: &[u8],
    grad: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (k, f) = (s.width, s.filters);
    let positions = s.rows * s.cols;
    assert!(table.len() >= positions * k * 8 && dz.len() >= positions * f);
    assert!(winners.len() >= positions * f && grad.len() >= k * f && f % 8 == 0);
    for block in (0..f).step_by(8) {
        for t0 in (0..k).step_by(TAPS_PER_PASS) {
            let taps = TAPS_PER_PASS.min(k - t0);
            let mut acc = [_mm256_setzero_ps(); TAPS_PER_PASS];
            for q in 0..positions {
                // SAFETY: the asserts above bound every offset read here.
                let g = _mm256_loadu_ps(dz.as_ptr().add(q * f + block));
                let wins = _mm_loadl_epi64(winners.as_ptr().add(q * f + block) as *const __m128i);
                let index = _mm256_cvtepu8_epi32(wins);
                let row = table.as_ptr().add((q * k + t0) * 8);
                for (j, a) in acc.iter_mut().enumerate() {
                    if j < taps {
                        let entries = _mm256_loadu_ps(row.add(j * 8));
                        let tap = _mm256_permutevar8x32_ps(entries, index);
                        *a = _mm256_fmadd_ps(tap, g, *a);
                    }
                }
            }
            for (j, a) in acc.iter().take(taps).enumerate() {
                let out = grad.as_mut_ptr().add((t0 + j) * f + block);
                _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), *a));
            }
        }
    }
}

/// One sample: its convolution rows, a band of window rows at a time, each band
/// pooled at once into `y` and `winners`.
fn forward_sample(
    s: &ConvPoolShape,
    image: &SampleImage,
    kernel: &[f32],
    epilogue: &(impl Fn(&mut [f32]) + Sync),
    band: &mut Band,
    y: &mut [f32],
    winners: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    {
        if s.filters.is_multiple_of(8) && is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2; filters are a multiple of 8.
            return unsafe { forward_sample_avx2(s, image, kernel, epilogue, band, y, winners) };
        }
    }
    for_each_band(s, image, kernel, epilogue, band, |outputs, qy| {
        pool_band(s, outputs, qy, y, winners)
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_sample_avx2(
    s: &ConvPoolShape,
    image: &SampleImage,
    kernel: &[f32],
    epilogue: &(impl Fn(&mut [f32]) + Sync),
    band: &mut Band,
    y: &mut [f32],
    winners: &mut [u8],
) {
    for_each_band(s, image, kernel, epilogue, band, |outputs, qy| {
        // SAFETY: the caller checked AVX2 and the filter count.
        unsafe { pool_band_avx2(s, outputs, qy, y, winners) }
    });
}

/// For each pooled row `qy`: gathers the patch rows of its band into
/// `band.patches`, computes their convolution rows into `band.outputs`, then
/// runs `pool(band.outputs, qy)`.
#[inline(always)]
fn for_each_band(
    s: &ConvPoolShape,
    image: &SampleImage,
    kernel: &[f32],
    epilogue: &(impl Fn(&mut [f32]) + Sync),
    band: &mut Band,
    mut pool: impl FnMut(&[f32], usize),
) {
    let (k, f) = (s.width, s.filters);
    let used = s.cols * s.window.cols;
    let positions = s.window.rows * used;
    let Band { patches, outputs } = band;
    outputs.resize(positions * f, 0.0);
    patches.resize(positions * k, 0.0);
    for qy in 0..s.rows {
        let mut rows = patches.chunks_exact_mut(k);
        for r in 0..s.window.rows {
            for ox in 0..used {
                let row = rows.next().expect("a patch row per band position");
                image.patch_row(qy * s.window.rows + r, ox, row);
            }
        }
        small_k::product_serial(patches, kernel, k, f, outputs, epilogue);
        pool(outputs, qy);
    }
}

/// Window entry `w` (row-major) of pooled column `qx` in a band.
#[inline(always)]
fn band_entry<'a>(s: &ConvPoolShape, band: &'a [f32], qx: usize, w: usize) -> &'a [f32] {
    let f = s.filters;
    let (r, c) = (w / s.window.cols, w % s.window.cols);
    &band[(r * s.cols * s.window.cols + qx * s.window.cols + c) * f..][..f]
}

/// Pools one band: each window's max, and the index of its first maximum.
fn pool_band(s: &ConvPoolShape, band: &[f32], qy: usize, y: &mut [f32], winners: &mut [u8]) {
    let f = s.filters;
    for qx in 0..s.cols {
        let at = (qy * s.cols + qx) * f;
        for j in 0..f {
            let (mut best, mut index) = (band_entry(s, band, qx, 0)[j], 0);
            for w in 1..s.window_size() {
                let x = band_entry(s, band, qx, w)[j];
                if x > best {
                    (best, index) = (x, w);
                }
            }
            y[at + j] = best;
            winners[at + j] = index as u8;
        }
    }
}

/// `pool_band` eight filters at a time, in registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pool_band_avx2(
    s: &ConvPoolShape,
    band: &[f32],
    qy: usize,
    y: &mut [f32],
    winners: &mut [u8],
) {
    use std::arch::x86_64::*;
    let f = s.filters;
    let at = qy * s.cols * f;
    let (y, winners) = (&mut y[at..][..s.cols * f], &mut winners[at..][..s.cols * f]);
    // The low byte of each 32-bit lane, gathered into the first 4 bytes of each half.
    let low_bytes = _mm256_setr_epi8(
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, //
        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    );
    for qx in 0..s.cols {
        for block in (0..f).step_by(8) {
            // SAFETY: band_entry bounds each entry to f values; block + 8 <= f.
            let mut best = _mm256_loadu_ps(band_entry(s, band, qx, 0).as_ptr().add(block));
            let mut index = _mm256_setzero_ps();
            for w in 1..s.window_size() {
                let x = _mm256_loadu_ps(band_entry(s, band, qx, w).as_ptr().add(block));
                let better = _mm256_cmp_ps::<_CMP_GT_OQ>(x, best);
                best = _mm256_blendv_ps(best, x, better);
                let w = _mm256_castsi256_ps(_mm256_set1_epi32(w as i32));
                index = _mm256_blendv_ps(index, w, better);
            }
            let out = qx * f + block;
            _mm256_storeu_ps(y[out..][..8].as_mut_ptr(), best);
            let bytes = _mm256_shuffle_epi8(_mm256_castps_si256(index), low_bytes);
            let packed = _mm_unpacklo_epi32(
                _mm256_castsi256_si128(bytes),
                _mm256_extracti128_si256::<1>(bytes),
            );
            _mm_storel_epi64(winners[out..][..8].as_mut_ptr() as *mut __m128i, packed);
        }
    }
}

/// Whether `tasks` tasks over `values` values are worth spreading over the pool.
fn parallel(tasks: usize, values: usize) -> bool {
    tasks > 1 && values >= PARALLEL_THRESHOLD / 4 && rayon::current_num_threads() > 1
}

/// Whether `activation` may be fused: applied elementwise, with a derivative
/// known from its output alone (the pooled value is the winner's output).
pub(crate) fn fusable(activation: Activation) -> bool {
    activation.is_elementwise() && activation.backward_from_output()
}

#[cfg(test)]
mod tests {
    use super::super::{Conv2D, Ctx, Layer, Pool2D, PoolKind};
    use crate::rng::Key;
    use serde_json::json;

    fn noise(key: Key, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| key.uniform_f32(i as u64) * 2.0 - 1.0)
            .collect()
    }

    fn ctx() -> Ctx<'static> {
        Ctx::for_tests(true)
    }

    /// The fused pair against Conv2D then MaxPooling2D run as two layers:
    /// the same pooled values bit for bit, the same gradients up to rounding.
    #[test]
    fn fused_pair_matches_the_two_layers_run_one_after_the_other() {
        let cases = [
            // input (h, w, c), kernel, filters, pool, activation, padding, strides, dilation
            (
                [28, 28, 1],
                [3, 3],
                32,
                [2, 2],
                "relu",
                "valid",
                [1, 1],
                [1, 1],
            ),
            (
                [9, 11, 3],
                [3, 2],
                5,
                [2, 3],
                "tanh",
                "same",
                [1, 1],
                [1, 1],
            ),
            (
                [7, 7, 2],
                [2, 2],
                8,
                [3, 3],
                "linear",
                "valid",
                [1, 1],
                [1, 1],
            ),
            (
                [15, 13, 2],
                [3, 3],
                16,
                [2, 2],
                "relu",
                "same",
                [2, 1],
                [1, 1],
            ),
            (
                [14, 15, 1],
                [3, 2],
                8,
                [2, 2],
                "elu",
                "valid",
                [1, 2],
                [2, 1],
            ),
        ];
        for (case, (input, kernel, filters, pool, act, padding, strides, dilation)) in
            cases.into_iter().enumerate()
        {
            let config = json!({
                "filters": filters, "kernel_size": kernel, "strides": strides,
                "dilation_rate": dilation, "padding": padding, "activation": act,
            });
            let key = Key::new(case as u64);
            let build = || {
                let mut conv = Conv2D::build("conv", &config, &input, key).unwrap();
                let bias = noise(key.fold(9), filters);
                conv.params_mut()[1]
                    .value_slice_mut()
                    .copy_from_slice(&bias);
                conv
            };
            let (mut conv, mut fused) = (build(), build());
            let mut pooling = Pool2D::build(
                "pool",
                &json!({"pool_size": pool, "padding": "valid"}),
                conv.output_shape(),
                PoolKind::Max,
            )
            .unwrap();
            let window = pooling.tiling_max_pool().expect("pool tiles its input");
            assert!(fused.absorb_max_pool(window));
            let rows = 6; // not a multiple of the samples per task
            let in_size: usize = input.iter().product();
            let conv_size: usize = conv.output_shape().iter().product();
            let out_size: usize = pooling.output_shape().iter().product();
            let x = noise(key.fold(1), rows * in_size);
            let dy = noise(key.fold(2), rows * out_size);

            let mut z = vec![0.0; rows * conv_size];
            let mut y = vec![0.0; rows * out_size];
            conv.forward(&x, &mut z, rows, &ctx());
            pooling.forward(&z, &mut y, rows, &ctx());
            let mut y_fused = vec![0.0; rows * out_size];
            fused.forward(&x, &mut y_fused, rows, &ctx());
            assert_eq!(y, y_fused, "case {case}: pooled values");

            for with_dx in [false, true] {
                let mut dz = vec![0.0; rows * conv_size];
                pooling.backward(&z, &y, &mut dy.clone(), Some(&mut dz), rows);
                let mut dx = vec![0.0; rows * in_size];
                conv.backward(&x, &z, &mut dz, with_dx.then_some(&mut dx[..]), rows);
                let mut dx_fused = vec![0.0; rows * in_size];
                let dx_arg = with_dx.then_some(&mut dx_fused[..]);
                fused.backward(&x, &y_fused, &mut dy.clone(), dx_arg, rows);
                let close = |a: &[f32], b: &[f32], what: &str| {
                    assert_eq!(a.len(), b.len());
                    for (i, (&p, &q)) in a.iter().zip(b).enumerate() {
                        assert!(
                            (p - q).abs() <= 1e-5 * (1.0 + p.abs()),
                            "case {case} dx={with_dx}: {what}[{i}] {p} vs {q}"
                        );
                    }
                };
                for (p, q) in conv.params().iter().zip(fused.params()) {
                    close(
                        p.grad.as_slice().unwrap(),
                        q.grad.as_slice().unwrap(),
                        p.name,
                    );
                    assert!(p.grad.as_slice().unwrap().iter().any(|&g| g != 0.0));
                }
                close(&dx, &dx_fused, "dx");
            }
        }
    }
}
