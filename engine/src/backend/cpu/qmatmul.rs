//! Products `x (m, k) @ W^T` for every [`Matrix`] storage, reading ggml
//! blocks where they lie instead of an f32 copy of the weights.
//!
//! Paths, picked per call from `m`, the storage and the [`Batching`]:
//! - **fused** (blocks; any m when row-invariant, else m <= [`FUSED_MAX_ROWS`]):
//!   each weight block is loaded once, expanded in registers to exactly the
//!   f32 values [`dequantize`] produces (the same operations and roundings;
//!   Q4_1's `d * q + m` is one FMA because `d * q` is exact), and multiplied
//!   into two input rows at a time, each with the same four accumulators
//!   whatever m is. The decode and verify path. Kernels exist for Q4_0, Q4_1
//!   and Q8_0 on x86-64 with AVX2, FMA and F16C.
//! - **tiles** (blocks at prefill widths): tiles of weight rows expanded to
//!   f32 (by the fused kernels' expansion, else [`Matrix::dequantize_rows`])
//!   into a reused buffer that stays in cache, each multiplied with `gemm`.
//! - **dense** (f32 matrices at prefill): one `gemm` call over the matrix.
//! - **dense rows** (f32 matrices, row-invariant): one fixed-order dot
//!   product per output; `gemm`'s blocking may depend on `m`.
//!
//! All multiply by the same f32 weight values, so results differ only in
//! summation order; the tests check each path against `dequantize` plus a
//! dot product in f64. `dequantize` is scalar and too slow to run on every
//! decode step, so [`prepare`] converts block matrices without a fused
//! kernel on this CPU to f32 once (the portable fallback is the dense path).
//! The fused path splits work over weight rows, several rows per rayon
//! task; each task fills its rows of a transposed (n, m) result, which is
//! then added into the (m, n) output. `gemm` parallelises itself.
//!
//! [`dequantize`]: crate::model::dequant::dequantize

use std::cell::RefCell;

use rayon::prelude::*;

use crate::model::dequant::GgmlType;
use crate::model::matrix::{Matrix, Storage};

/// Widest `x` the fused kernels take; wider products go through tiles.
/// Measured over the default model's 210 Q4_1 layer matrices (2 cores,
/// AVX2): fused is 3.2x faster than tiles at m = 8, 1.6x at 16, 1.25x at
/// 24, even at 32; tiles are 1.4x faster at 128.
const FUSED_MAX_ROWS: usize = 24;
/// f32 values of one expanded tile (4 MiB: still in cache when gemm reads
/// it, large enough that gemm's packing of `x` per tile is amortised).
const TILE_VALUES: usize = 1 << 20;
/// Weight rows per rayon task when expanding a tile.
const EXPAND_ROWS_PER_TASK: usize = 64;

thread_local! {
    /// The calling thread's buffer for expanded tiles, reused across products.
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Readies a matrix for this CPU: block types with a fused kernel stay
/// compact; others become f32 (same values, see [`Matrix::convert_to_f32`]).
pub(super) fn prepare(w: &mut Matrix) {
    if matches!(w.storage(), Storage::Blocks { .. }) && Fused::for_matrix(w).is_none() {
        w.convert_to_f32();
    }
}

/// Whether a product's rows may depend on how many rows it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Batching {
    /// Every output row is computed in one fixed order whatever `m` is, so
    /// a row is bit-identical whether computed alone or in a batch: decode
    /// and verify steps, which makes speculative decoding reproduce plain
    /// greedy decoding exactly.
    RowInvariant,
    /// The fastest path for the width (prefill).
    Fastest,
}

/// `out (m, n) = x (m, k) @ w^T`, or `out += ...` when `accumulate`.
pub(super) fn matmul_into(x: &[f32], w: &Matrix, out: &mut [f32], accumulate: bool, batching: Batching) {
    let m = x.len() / w.cols().max(1);
    let path = match (w.storage(), Fused::for_matrix(w), batching) {
        (Storage::F32(_), _, Batching::RowInvariant) => Path::DenseRows,
        (Storage::F32(_), _, Batching::Fastest) => Path::Dense,
        (Storage::Blocks { .. }, Some(_), Batching::RowInvariant) => Path::Fused,
        (Storage::Blocks { .. }, Some(_), Batching::Fastest) if m <= FUSED_MAX_ROWS => Path::Fused,
        // Blocks without a kernel exist only before [`prepare`] (which
        // converts them to f32); expanding them is then the only way.
        (Storage::Blocks { .. }, _, _) => Path::Tiles,
    };
    matmul_with(path, x, w, out, accumulate);
}

/// How a product is computed; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Blocks through a fused kernel.
    Fused,
    /// Blocks expanded tile by tile, gemm per tile.
    Tiles,
    /// An f32 matrix, one gemm over all of it.
    Dense,
    /// An f32 matrix, one fixed-order dot product per (row, weight row).
    DenseRows,
}

/// [`matmul_into`] along a chosen path. Panics on inconsistent shapes, on
/// [`Path::Dense`] for a block matrix, or on [`Path::Fused`] when
/// [`Fused::for_matrix`] has no kernel for `w`.
fn matmul_with(path: Path, x: &[f32], w: &Matrix, out: &mut [f32], accumulate: bool) {
    let (n, k) = (w.rows(), w.cols());
    let m = x.len() / k.max(1);
    assert!(
        x.len() == m * k && out.len() == m * n,
        "matmul shapes: x has {} values, w is ({n}, {k}), out has {}",
        x.len(),
        out.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    match (path, w.storage()) {
        (Path::Dense, Storage::F32(data)) => gemm_into(x, k, data, out, n, 0, accumulate),
        (Path::DenseRows, Storage::F32(data)) => dense_rows(x, k, data, out, accumulate),
        (Path::Dense | Path::DenseRows, Storage::Blocks { .. }) => panic!("the dense paths take f32 matrices"),
        (Path::Tiles, _) => tiles(x, w, out, accumulate),
        (Path::Fused, _) => {
            let kernel = Fused::for_matrix(w).expect("the fused path is only chosen for matrices with a kernel");
            fused(kernel, x, w, out, accumulate);
        }
    }
}

/// The fused path; see the module documentation.
fn fused(kernel: Fused, x: &[f32], w: &Matrix, out: &mut [f32], accumulate: bool) {
    let Storage::Blocks { bytes, .. } = w.storage() else { unreachable!("fused kernels exist only for blocks") };
    let (n, k) = (w.rows(), w.cols());
    let m = x.len() / k;
    let row_bytes = w.row_bytes();
    let rows_per_task = n.div_ceil(4 * rayon::current_num_threads()).clamp(4, 128);
    let mut transposed = vec![0.0f32; n * m]; // (n, m)
    transposed
        .par_chunks_mut(rows_per_task * m)
        .zip(bytes.par_chunks(rows_per_task * row_bytes))
        .for_each(|(t, w_rows)| kernel.run(x, k, w_rows, t));
    add_transposed(&transposed, m, out, accumulate);
}

/// The row-invariant f32 path: each output is one [`dot`] of an input row
/// and a weight row, split over weight rows like the fused path.
fn dense_rows(x: &[f32], k: usize, w: &[f32], out: &mut [f32], accumulate: bool) {
    let (n, m) = (w.len() / k, x.len() / k);
    let rows_per_task = n.div_ceil(4 * rayon::current_num_threads()).clamp(4, 128);
    let mut transposed = vec![0.0f32; n * m]; // (n, m)
    transposed.par_chunks_mut(rows_per_task * m).zip(w.par_chunks(rows_per_task * k)).for_each(|(t, w_rows)| {
        for (t_row, w_row) in t.chunks_exact_mut(m).zip(w_rows.chunks_exact(k)) {
            for (o, x_row) in t_row.iter_mut().zip(x.chunks_exact(k)) {
                *o = dot(x_row, w_row);
            }
        }
    });
    add_transposed(&transposed, m, out, accumulate);
}

/// `a . b` with eight interleaved accumulators, always in the same order
/// (inlined, so callers compiled for AVX2 get AVX2 code).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..8 {
            acc[lane] += x[lane] * y[lane];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `out (m, n)` [+]= the transpose of `transposed (n, m)`.
fn add_transposed(transposed: &[f32], m: usize, out: &mut [f32], accumulate: bool) {
    let n = out.len() / m;
    for (r, out_row) in out.chunks_exact_mut(n).enumerate() {
        let column = transposed.iter().skip(r).step_by(m);
        if accumulate {
            out_row.iter_mut().zip(column).for_each(|(o, &v)| *o += v);
        } else {
            out_row.iter_mut().zip(column).for_each(|(o, &v)| *o = v);
        }
    }
}

/// The tiles path: rows of `w` expanded to f32 a tile at a time into this
/// thread's reused buffer, each tile multiplied into its columns of `out`.
fn tiles(x: &[f32], w: &Matrix, out: &mut [f32], accumulate: bool) {
    let (n, k) = (w.rows(), w.cols());
    let rows_per_tile = (TILE_VALUES / k).max(1);
    let kernel = Fused::for_matrix(w);
    TILE.with_borrow_mut(|tile| {
        for first in (0..n).step_by(rows_per_tile) {
            let rows = first..(first + rows_per_tile).min(n);
            tile.resize(rows.len() * k, 0.0);
            match (kernel, w.storage()) {
                (Some(kernel), Storage::Blocks { bytes, .. }) => {
                    let row_bytes = w.row_bytes();
                    tile.par_chunks_mut(EXPAND_ROWS_PER_TASK * k)
                        .zip(
                            bytes[rows.start * row_bytes..rows.end * row_bytes]
                                .par_chunks(EXPAND_ROWS_PER_TASK * row_bytes),
                        )
                        .for_each(|(t, w_rows)| kernel.expand(w_rows, t));
                }
                _ => tile.copy_from_slice(&w.dequantize_rows(rows.clone())),
            }
            gemm_into(x, k, tile, out, n, rows.start, accumulate);
        }
    });
}

/// Columns `first..first + rows` of `out (m, n)` [+]= `x (m, k) @ w^T` for
/// `w` (rows, k) f32 values; the `gemm` crate parallelises over rayon.
fn gemm_into(x: &[f32], k: usize, w: &[f32], out: &mut [f32], n: usize, first: usize, accumulate: bool) {
    let m = x.len() / k;
    let rows = w.len() / k;
    assert!(
        x.len() == m * k && w.len() == rows * k && out.len() == m * n && first + rows <= n,
        "gemm shapes: x {}, w {}, out {}, k {k}, n {n}, columns from {first}",
        x.len(),
        w.len(),
        out.len()
    );
    // SAFETY: the strides address exactly what the check above bounds: x
    // is (m, k) row-major; w is (rows, k) row-major, read as its transpose
    // (k, rows) (column stride k, row stride 1); the destination is the
    // (m, rows) block of out at column `first` (column stride 1, row stride
    // n), so row r writes out[r*n + first..r*n + first + rows], within out
    // as first + rows <= n. out does not alias the inputs (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            rows,
            k,
            out.as_mut_ptr().add(first),
            1,
            n as isize,
            accumulate,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// The SIMD kernels of one block type, only handed out after the CPU
/// features they need were detected.
#[derive(Clone, Copy)]
struct Fused {
    /// `out (rows, m)[j][r] = x_r . w_j` for `(x, k, w_rows, out)`.
    rows: unsafe fn(&[f32], usize, &[u8], &mut [f32]),
    /// The f32 values of whole blocks, as `dequantize` gives them.
    expand: unsafe fn(&[u8], &mut [f32]),
}

impl Fused {
    /// The kernels for `w`'s block type on this CPU, if there are any.
    fn for_matrix(w: &Matrix) -> Option<Self> {
        match w.storage() {
            Storage::Blocks { ty, .. } => Self::for_type(*ty),
            Storage::F32(_) => None,
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn for_type(ty: GgmlType) -> Option<Self> {
        let detected =
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        if !detected {
            return None;
        }
        Some(match ty {
            GgmlType::Q4_0 => {
                Self { rows: avx2::rows::<{ avx2::Q4_0 }>, expand: avx2::expand_blocks::<{ avx2::Q4_0 }> }
            }
            GgmlType::Q4_1 => {
                Self { rows: avx2::rows::<{ avx2::Q4_1 }>, expand: avx2::expand_blocks::<{ avx2::Q4_1 }> }
            }
            GgmlType::Q8_0 => {
                Self { rows: avx2::rows::<{ avx2::Q8_0 }>, expand: avx2::expand_blocks::<{ avx2::Q8_0 }> }
            }
            _ => return None,
        })
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn for_type(_: GgmlType) -> Option<Self> {
        None
    }

    /// `out (rows, m)[j][r] = x_r . w_j` for the rows of blocks in `w`.
    fn run(self, x: &[f32], k: usize, w: &[u8], out: &mut [f32]) {
        // SAFETY: `for_type` built this value only after detecting every CPU
        // feature the kernel is compiled for; the kernel checks its shapes.
        unsafe { (self.rows)(x, k, w, out) }
    }

    /// `out` = the f32 values of the whole blocks in `w`.
    fn expand(self, w: &[u8], out: &mut [f32]) {
        // SAFETY: as in `run`.
        unsafe { (self.expand)(w, out) }
    }
}

/// AVX2 kernels over 32-value blocks. Each block becomes four vectors of
/// eight weights, computed as [`crate::model::dequant`] computes them.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Block kinds, as const generic parameters.
    pub(super) const Q4_0: u8 = 0;
    pub(super) const Q4_1: u8 = 1;
    pub(super) const Q8_0: u8 = 2;

    /// `sizeof(block_*)` in ggml (checked against `GgmlType::type_size` in
    /// the tests).
    pub(super) const fn block_bytes(kind: u8) -> usize {
        match kind {
            Q4_0 => 18,
            Q4_1 => 20,
            _ => 34,
        }
    }

    /// `out (rows, m)[j][r] = x_r . w_j` for `x` (m, k) and `w` holding `rows`
    /// rows of `k / 32` blocks of `KIND`. Rows of `x` go eight (then four,
    /// then the rest) at a time, so each block is expanded once per group.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C. Shapes are checked here.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows<const KIND: u8>(x: &[f32], k: usize, w: &[u8], out: &mut [f32]) {
        let blocks = k / 32;
        let row_bytes = blocks * block_bytes(KIND);
        let m = x.len() / k.max(1);
        let n = out.len() / m.max(1);
        assert!(
            k.is_multiple_of(32) && m > 0 && x.len() == m * k && out.len() == n * m && w.len() == n * row_bytes,
            "fused kernel shapes: k {k}, x {}, w {} bytes, out {}",
            x.len(),
            w.len(),
            out.len()
        );
        for (j, out_row) in out.chunks_exact_mut(m).enumerate() {
            // SAFETY (of every pointer below): row j of w is bytes
            // j*row_bytes.. (j+1)*row_bytes (w.len() == n * row_bytes); input
            // rows r..r+G are within x (x.len() == m * k); outputs r..r+G are
            // within out_row (len m).
            let w_row = w.as_ptr().add(j * row_bytes);
            let (x_ptr, o) = (x.as_ptr(), out_row.as_mut_ptr());
            // Pairs of rows, then a single one, with the same four
            // accumulators per row in both: a row's sum is the same whatever
            // m is (row invariance; see `Batching`).
            let mut r = 0;
            while m - r >= 2 {
                group::<KIND, 2, 4>(x_ptr.add(r * k), k, blocks, w_row, o.add(r));
                r += 2;
            }
            if m - r == 1 {
                group::<KIND, 1, 4>(x_ptr.add(r * k), k, blocks, w_row, o.add(r));
            }
        }
    }

    /// `out` = the f32 values of the whole `KIND` blocks in `w`, 32 per block.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C. Shapes are checked here.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn expand_blocks<const KIND: u8>(w: &[u8], out: &mut [f32]) {
        let size = block_bytes(KIND);
        assert!(
            w.len().is_multiple_of(size) && out.len() == w.len() / size * 32,
            "expand shapes: {} bytes, {} values",
            w.len(),
            out.len()
        );
        for (block, values) in w.chunks_exact(size).zip(out.chunks_exact_mut(32)) {
            // SAFETY: `block` is one whole block; `values` holds 32 f32s.
            let v = expand::<KIND>(block.as_ptr());
            for (c, &vc) in v.iter().enumerate() {
                _mm256_storeu_ps(values.as_mut_ptr().add(8 * c), vc);
            }
        }
    }

    /// Dot products of one weight row (`blocks` blocks at `w`) with `G`
    /// consecutive input rows at `x` (stride `k`), written to `out[..G]`.
    /// `A` independent accumulators per input row hide the FMA latency.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn group<const KIND: u8, const G: usize, const A: usize>(
        x: *const f32,
        k: usize,
        blocks: usize,
        w: *const u8,
        out: *mut f32,
    ) {
        let mut acc = [[_mm256_setzero_ps(); A]; G];
        for b in 0..blocks {
            let weights = expand::<KIND>(w.add(b * block_bytes(KIND)));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let xb = x.add(r * k + b * 32);
                for (c, &wc) in weights.iter().enumerate() {
                    acc_r[c % A] = _mm256_fmadd_ps(_mm256_loadu_ps(xb.add(8 * c)), wc, acc_r[c % A]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            let mut sum = acc_r[0];
            for &a in &acc_r[1..] {
                sum = _mm256_add_ps(sum, a);
            }
            *out.add(r) = horizontal_sum(sum);
        }
    }

    /// The 32 weights of the block at `b`, in order, bit for bit as
    /// `dequantize` makes them (f16 scales convert exactly; the same
    /// roundings in the same order).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn expand<const KIND: u8>(b: *const u8) -> [__m256; 4] {
        // The first four bytes: `d` and, for Q4_1, `m` (other kinds: `d` and
        // two quant bytes, whose lane is unused). All blocks are >= 18 bytes.
        let scales = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(b as *const i32)));
        let d = _mm256_broadcastss_ps(scales);
        match KIND {
            Q4_0 => {
                // x = d * (q - 8)
                let q = nibbles(b.add(2));
                let eight = _mm256_set1_ps(8.0);
                [
                    _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(q[0]), eight)),
                    _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(q[1]), eight)),
                    _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(q[2]), eight)),
                    _mm256_mul_ps(d, _mm256_sub_ps(_mm256_cvtepi32_ps(q[3]), eight)),
                ]
            }
            Q4_1 => {
                // x = d * q + m. `dequantize` rounds the product, then the
                // sum; the product of an f16 (11 significant bits) and a
                // 4-bit q is exact in f32, so one FMA rounds identically.
                let min = _mm256_broadcastss_ps(_mm_movehdup_ps(scales));
                let q = nibbles(b.add(4));
                [
                    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[0]), min),
                    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[1]), min),
                    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[2]), min),
                    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[3]), min),
                ]
            }
            _ => {
                // Q8_0: x = d * q, q signed bytes at b + 2.
                // (A closure would not inherit this function's features.)
                let qs = b.add(2) as *const __m128i;
                let q0 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(qs));
                let q1 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.add(10) as *const __m128i));
                let q2 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.add(18) as *const __m128i));
                let q3 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.add(26) as *const __m128i));
                [
                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(q0)),
                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(q1)),
                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(q2)),
                    _mm256_mul_ps(d, _mm256_cvtepi32_ps(q3)),
                ]
            }
        }
    }

    /// The 32 four-bit quants of the 16 bytes at `qs`, in value order: value
    /// j is the low nibble of byte j, value j + 16 its high nibble.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn nibbles(qs: *const u8) -> [__m256i; 4] {
        let low_bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qs as *const __m128i));
        let high_bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qs.add(8) as *const __m128i));
        let mask = _mm256_set1_epi32(0x0F);
        [
            _mm256_and_si256(low_bytes, mask),
            _mm256_and_si256(high_bytes, mask),
            _mm256_srli_epi32::<4>(low_bytes),
            _mm256_srli_epi32::<4>(high_bytes),
        ]
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn horizontal_sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dequant::dequantize;

    /// Every block type a [`Matrix`] keeps compact.
    const BLOCK_TYPES: [GgmlType; 10] = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// The widths the tests multiply: decode (1), verify (2, 3, 8, 17; every
    /// group size of the fused kernels) and a prefill width. Every path is
    /// run at every width, whatever `matmul_into` would pick.
    const WIDTHS: [usize; 6] = [1, 2, 3, 8, 17, 64];

    /// Bound on |path - reference| relative to sum_i |x_i * w_i|: f32
    /// summation of up to 768 products in 8+ independent lanes stays well
    /// within 1e-5 of that sum.
    const REL_TOLERANCE: f64 = 1e-5;

    /// xorshift64*: deterministic test data without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn uniform(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    /// A (rows, cols) matrix of random blocks of `ty`; blocks whose values
    /// are not all finite (an f16 scale of inf or NaN) are drawn again.
    fn random_matrix(ty: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Matrix {
        let size = ty.type_size();
        let mut bytes = Vec::new();
        for _ in 0..rows * cols / ty.block_size() {
            loop {
                let block: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
                let values = dequantize(ty, &block, ty.block_size()).expect("one block");
                if values.iter().all(|v| v.is_finite()) {
                    bytes.extend(block);
                    break;
                }
            }
        }
        Matrix::from_blocks(rows, cols, ty, bytes).expect("valid blocks")
    }

    /// `x @ w^T` along every path that can compute it on this machine: the
    /// block paths on `w`, and the dense path on `w` converted to f32 (what
    /// [`prepare`] does for types without a fused kernel).
    fn products(w: &Matrix, x: &[f32]) -> Vec<(Path, Vec<f32>)> {
        let mut paths = vec![Path::Tiles];
        if Fused::for_matrix(w).is_some() {
            paths.push(Path::Fused);
        }
        let mut dense = w.clone();
        dense.convert_to_f32();
        let m = x.len() / w.cols();
        let mut results: Vec<(Path, Vec<f32>)> = paths
            .into_iter()
            .map(|path| {
                let mut out = vec![f32::NAN; m * w.rows()];
                matmul_with(path, x, w, &mut out, false);
                (path, out)
            })
            .collect();
        for path in [Path::Dense, Path::DenseRows] {
            let mut out = vec![f32::NAN; m * w.rows()];
            matmul_with(path, x, &dense, &mut out, false);
            results.push((path, out));
        }
        results
    }

    /// Row invariance, which lossless speculative decoding rests on: every
    /// row of a row-invariant product is bit-identical to the same row
    /// computed alone, for the fused kernels (compact types) and for f32.
    #[test]
    fn row_invariant_products_do_not_depend_on_the_batch_width() {
        let mut rng = Rng(0x5EED);
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::F32] {
            let (n, k) = (37, 576);
            let w = match ty {
                GgmlType::F32 => Matrix::from_f32(n, k, (0..n * k).map(|_| rng.uniform()).collect()).expect("valid"),
                _ => random_matrix(ty, n, k, &mut rng),
            };
            for m in [2, 3, 8, 17, 33, 64] {
                let x: Vec<f32> = (0..m * k).map(|_| rng.uniform()).collect();
                let mut batch = vec![0.0f32; m * n];
                matmul_into(&x, &w, &mut batch, false, Batching::RowInvariant);
                for r in 0..m {
                    let mut alone = vec![0.0f32; n];
                    matmul_into(&x[r * k..(r + 1) * k], &w, &mut alone, false, Batching::RowInvariant);
                    assert_eq!(
                        batch[r * n..(r + 1) * n],
                        alone[..],
                        "{ty} m={m}: row {r} differs from its single-row product"
                    );
                }
            }
        }
    }

    /// (n, k) shapes for blocks of `block_size`: one row, odd row counts, a
    /// single block per row and several.
    fn shapes(block_size: usize) -> Vec<(usize, usize)> {
        let mut shapes = vec![(1, 256), (5, 768), (37, 512)];
        if block_size == 32 {
            shapes.extend([(3, 32), (11, 96)]);
        }
        shapes
    }

    #[test]
    fn every_path_matches_dequantize_then_dot() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for ty in BLOCK_TYPES {
            for (n, k) in shapes(ty.block_size()) {
                let w = random_matrix(ty, n, k, &mut rng);
                let values = w.dequantize_rows(0..n);
                for m in WIDTHS {
                    let x: Vec<f32> = (0..m * k).map(|_| rng.uniform()).collect();
                    for (path, out) in products(&w, &x) {
                        for r in 0..m {
                            for j in 0..n {
                                let (x_row, w_row) = (&x[r * k..(r + 1) * k], &values[j * k..(j + 1) * k]);
                                let exact: f64 =
                                    x_row.iter().zip(w_row).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                                let scale: f64 =
                                    x_row.iter().zip(w_row).map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs()).sum();
                                let got = f64::from(out[r * n + j]);
                                assert!(
                                    (got - exact).abs() <= REL_TOLERANCE * scale,
                                    "{ty} {path:?} m={m} ({n}, {k}) [{r}][{j}]: {got} vs {exact} (scale {scale})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// With one nonzero value `v` per input row every output is the single
    /// product `v * w` plus zeros, so each path must return exactly the f32
    /// product with the dequantized weight (up to the sign of a zero). This
    /// holds only if the kernels use the dequantizer's values: the
    /// algebraically equal `d * (v * q) + m * v` for Q4_1 rounds differently.
    #[test]
    fn every_path_reads_exactly_the_dequantized_weights() {
        let mut rng = Rng(7);
        for ty in BLOCK_TYPES {
            let (n, k) = (9, 512);
            let w = random_matrix(ty, n, k, &mut rng);
            let values = w.dequantize_rows(0..n);
            for m in WIDTHS {
                let hot: Vec<(usize, f32)> = (0..m).map(|_| (rng.next() as usize % k, rng.uniform())).collect();
                let mut x = vec![0.0f32; m * k];
                for (r, &(i, v)) in hot.iter().enumerate() {
                    x[r * k + i] = v;
                }
                for (path, out) in products(&w, &x) {
                    for (r, &(i, v)) in hot.iter().enumerate() {
                        for j in 0..n {
                            assert_eq!(
                                out[r * n + j],
                                v * values[j * k + i],
                                "{ty} {path:?} m={m}: weight ({j}, {i}) times {v}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn products_accumulate_and_f32_matrices_multiply() {
        let w = Matrix::from_f32(3, 4, (0..12).map(|v| v as f32 * 0.5 - 2.0).collect()).expect("valid");
        let x: Vec<f32> = (0..8).map(|v| v as f32 - 3.0).collect(); // (2, 4)
        let values = w.dequantize_rows(0..3);
        let mut expected = vec![0.0f32; 6];
        for i in 0..2 {
            for j in 0..3 {
                expected[i * 3 + j] = (0..4).map(|l| x[i * 4 + l] * values[j * 4 + l]).sum();
            }
        }
        let mut out = vec![0.0f32; 6];
        matmul_into(&x, &w, &mut out, false, Batching::Fastest);
        assert_eq!(out, expected);
        let mut acc = vec![1.0f32; 6];
        matmul_into(&x, &w, &mut acc, true, Batching::RowInvariant);
        let plus_one: Vec<f32> = expected.iter().map(|v| v + 1.0).collect();
        assert_eq!(acc, plus_one);
        let q = random_matrix(GgmlType::Q8_0, 5, 64, &mut Rng(3));
        let x: Vec<f32> = (0..128).map(|v| (v % 7) as f32 - 3.0).collect(); // (2, 64)
        let mut once = vec![0.0f32; 10];
        matmul_into(&x, &q, &mut once, false, Batching::RowInvariant);
        let mut twice = once.clone();
        matmul_into(&x, &q, &mut twice, true, Batching::RowInvariant);
        assert_eq!(twice, once.iter().map(|v| v * 2.0).collect::<Vec<_>>());
    }

    #[test]
    fn prepare_keeps_fused_types_compact_and_converts_the_rest_exactly() {
        let mut rng = Rng(11);
        for ty in BLOCK_TYPES {
            let w = random_matrix(ty, 3, 256, &mut rng);
            let mut prepared = w.clone();
            prepare(&mut prepared);
            assert_eq!(prepared.dequantize_rows(0..3), w.dequantize_rows(0..3), "{ty}");
            let compact = matches!(prepared.storage(), Storage::Blocks { .. });
            assert_eq!(compact, Fused::for_type(ty).is_some(), "{ty}");
        }
    }

    /// Prefill products over several tiles write each tile's columns, with
    /// the fused expansion (Q4_1) and with `dequantize` (Q5_0).
    #[test]
    fn tiles_cover_matrices_larger_than_one_tile() {
        let mut rng = Rng(13);
        let (k, m) = (256, FUSED_MAX_ROWS + 1);
        let n = 2 * (TILE_VALUES / k) + 3;
        for ty in [GgmlType::Q4_1, GgmlType::Q5_0] {
            let w = random_matrix(ty, n, k, &mut rng);
            let values = w.dequantize_rows(0..n);
            let x: Vec<f32> = (0..m * k).map(|_| rng.uniform()).collect();
            let mut out = vec![1.0f32; m * n];
            matmul_into(&x, &w, &mut out, true, Batching::Fastest);
            for r in 0..m {
                for j in 0..n {
                    let (x_row, w_row) = (&x[r * k..(r + 1) * k], &values[j * k..(j + 1) * k]);
                    let exact: f64 =
                        1.0 + x_row.iter().zip(w_row).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>();
                    let scale: f64 =
                        1.0 + x_row.iter().zip(w_row).map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs()).sum::<f64>();
                    let got = f64::from(out[r * n + j]);
                    assert!((got - exact).abs() <= REL_TOLERANCE * scale, "{ty} [{r}][{j}]: {got} vs {exact}");
                }
            }
        }
    }

    #[test]
    fn fused_expansion_is_dequantize_bit_for_bit() {
        let mut rng = Rng(5);
        for ty in BLOCK_TYPES {
            let Some(kernel) = Fused::for_type(ty) else { continue };
            let w = random_matrix(ty, 7, 96, &mut rng);
            let Storage::Blocks { bytes, .. } = w.storage() else { unreachable!("random_matrix makes blocks") };
            let mut expanded = vec![f32::NAN; 7 * 96];
            kernel.expand(bytes, &mut expanded);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&expanded), bits(&w.dequantize_rows(0..7)), "{ty}");
        }
    }

    /// On AVX2 machines decode of the default model's types takes the fused
    /// path (so the tests above exercise it), with ggml's block sizes.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn fused_kernels_cover_q4_0_q4_1_q8_0_with_ggml_block_sizes() {
        assert_eq!(avx2::block_bytes(avx2::Q4_0), GgmlType::Q4_0.type_size());
        assert_eq!(avx2::block_bytes(avx2::Q4_1), GgmlType::Q4_1.type_size());
        assert_eq!(avx2::block_bytes(avx2::Q8_0), GgmlType::Q8_0.type_size());
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
                assert!(Fused::for_type(ty).is_some(), "{ty}");
            }
            assert!(Fused::for_type(GgmlType::Q6_K).is_none());
        }
    }
}
