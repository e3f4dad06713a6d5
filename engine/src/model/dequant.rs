//! ggml tensor data types and their conversion to f32: [`GgmlType`] (type ids,
//! block sizes, bytes per block) and [`dequantize`], which turns the raw bytes
//! of a GGUF tensor into dense f32 values.
//!
//! The block layouts follow ggml's `ggml-common.h` (`block_q4_0` ... `block_q6_K`)
//! and `dequantize_row_*` in `ggml-quants.c`. Every product and sum is computed
//! in f32 in the same order as gguf-py's `gguf/quants.py` (multiply, round, then
//! add), so the results are bit-identical to that independent implementation;
//! `fixtures/dequant/` holds the golden data that checks it.

use std::fmt;

use half::f16;
use rayon::prelude::*;

/// A ggml tensor data type, with ggml's numeric type id as discriminant.
/// Ids 4, 5 and 31-33, 36-38 were removed from ggml and are not valid.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// Elements per block of the K-quants (ggml's `QK_K`).
const QK_K: usize = 256;

impl GgmlType {
    /// Every known type, in id order.
    pub const ALL: [GgmlType; 32] = {
        use GgmlType::*;
        [
            F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ2_XXS, IQ2_XS, IQ3_XXS,
            IQ1_S, IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, I8, I16, I32, I64, F64, IQ1_M, BF16, TQ1_0, TQ2_0, MXFP4,
        ]
    };

    /// The type with ggml type id `id`, or `None` for an unknown or removed id.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.id() == id)
    }

    /// ggml's numeric type id (`enum ggml_type`).
    pub fn id(self) -> u32 {
        self as u32
    }

    /// ggml's name for the type (`F32`, `Q4_K`, ...).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
        }
    }

    /// Elements per block (1 for the plain float and integer types).
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 | IQ4_NL | MXFP4 => 32,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K | IQ2_XXS | IQ2_XS | IQ3_XXS | IQ1_S | IQ3_S | IQ2_S | IQ4_XS
            | IQ1_M | TQ1_0 | TQ2_0 => QK_K,
        }
    }

    /// Bytes per block (`sizeof(block_*)` in ggml).
    pub fn type_size(self) -> usize {
        use GgmlType::*;
        match self {
            I8 => 1,
            F16 | BF16 | I16 => 2,
            F32 | I32 => 4,
            F64 | I64 => 8,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
            IQ2_XXS => 66,
            IQ2_XS => 74,
            IQ3_XXS => 98,
            IQ1_S => 50,
            IQ4_NL => 18,
            IQ3_S => 110,
            IQ2_S => 82,
            IQ4_XS => 136,
            IQ1_M => 56,
            TQ1_0 => 54,
            TQ2_0 => 66,
            MXFP4 => 17,
        }
    }

    /// Bytes taken by `n_elements` values, or `None` when `n_elements` is not
    /// a whole number of blocks or the size overflows.
    pub fn bytes_for(self, n_elements: usize) -> Option<usize> {
        if !n_elements.is_multiple_of(self.block_size()) {
            return None;
        }
        (n_elements / self.block_size()).checked_mul(self.type_size())
    }

    /// Whether [`dequantize`] converts this type.
    pub fn is_supported(self) -> bool {
        use GgmlType::*;
        matches!(self, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a buffer could not be dequantized. The caller adds the file and tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    #[error("data type {0} cannot be converted to f32")]
    Unsupported(GgmlType),
    #[error("{n_elements} elements is not a whole number of {ty} blocks of {block_size}")]
    PartialBlock { ty: GgmlType, n_elements: usize, block_size: usize },
    #[error("{n_elements} {ty} elements need {expected} bytes, found {found}")]
    Length { ty: GgmlType, n_elements: usize, expected: usize, found: usize },
}

/// Blocks handed to one rayon task: large enough to amortize scheduling,
/// small enough to balance a 2-core or a 64-core machine.
const BLOCKS_PER_TASK: usize = 1024;

/// Converts `n_elements` values of type `ty`, stored in `bytes` (exactly
/// `ty.bytes_for(n_elements)` bytes, little-endian), to f32.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>, DequantError> {
    let block_fn: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => block_f32,
        GgmlType::F16 => block_f16,
        GgmlType::BF16 => block_bf16,
        GgmlType::Q4_0 => block_q4_0,
        GgmlType::Q4_1 => block_q4_1,
        GgmlType::Q5_0 => block_q5_0,
        GgmlType::Q5_1 => block_q5_1,
        GgmlType::Q8_0 => block_q8_0,
        GgmlType::Q2_K => block_q2_k,
        GgmlType::Q3_K => block_q3_k,
        GgmlType::Q4_K => block_q4_k,
        GgmlType::Q5_K => block_q5_k,
        GgmlType::Q6_K => block_q6_k,
        other => return Err(DequantError::Unsupported(other)),
    };
    let block_size = ty.block_size();
    let expected = ty.bytes_for(n_elements).ok_or(DequantError::PartialBlock { ty, n_elements, block_size })?;
    if bytes.len() != expected {
        return Err(DequantError::Length { ty, n_elements, expected, found: bytes.len() });
    }
    let type_size = ty.type_size();
    let mut out = vec![0f32; n_elements];
    // The plain float types are converted in runs of 256 elements per call
    // (the function loops over its chunk); block types one block per call.
    let (elems_per_call, bytes_per_call) =
        if block_size == 1 { (256, 256 * type_size) } else { (block_size, type_size) };
    let task_elems = elems_per_call * BLOCKS_PER_TASK;
    let task_bytes = bytes_per_call * BLOCKS_PER_TASK;
    out.par_chunks_mut(task_elems).zip(bytes.par_chunks(task_bytes)).for_each(|(dst, src)| {
        if block_size == 1 {
            block_fn(src, dst);
        } else {
            for (d, s) in dst.chunks_exact_mut(block_size).zip(src.chunks_exact(type_size)) {
                block_fn(s, d);
            }
        }
    });
    Ok(out)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// F32: 4 little-endian bytes per value (any number of values).
fn block_f32(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

/// F16: IEEE half, 2 bytes per value (any number of values).
fn block_f16(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16::from_bits(u16::from_le_bytes([s[0], s[1]])).to_f32();
    }
}

/// BF16: the high half of an f32, 2 bytes per value (any number of values).
fn block_bf16(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f32::from_bits(u32::from(u16::from_le_bytes([s[0], s[1]])) << 16);
    }
}

/// Q4_0 (18 bytes / 32 values): `d: f16, qs: [u8; 16]`; value j is the low
/// nibble of `qs[j]`, value j+16 the high nibble; `x = d * (q - 8)`.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = d * (f32::from(qs[j] & 0x0F) - 8.0);
        y[j + 16] = d * (f32::from(qs[j] >> 4) - 8.0);
    }
}

/// Q4_1 (20 bytes / 32 values): `d: f16, m: f16, qs: [u8; 16]`; `x = d * q + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = d * f32::from(qs[j] & 0x0F) + m;
        y[j + 16] = d * f32::from(qs[j] >> 4) + m;
    }
}

/// Q5_0 (22 bytes / 32 values): `d: f16, qh: u32 (bit j = 5th bit of value j),
/// qs: [u8; 16]` (nibbles as Q4_0); `x = d * (q - 16)`.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = d * f32::from(((qs[j] & 0x0F) | (h0 << 4)) as i8 - 16);
        y[j + 16] = d * f32::from(((qs[j] >> 4) | (h1 << 4)) as i8 - 16);
    }
}

/// Q5_1 (24 bytes / 32 values): `d: f16, m: f16, qh: u32, qs: [u8; 16]`;
/// `x = d * q + m`.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let h0 = ((qh >> j) & 1) as u8;
        let h1 = ((qh >> (j + 16)) & 1) as u8;
        y[j] = d * f32::from((qs[j] & 0x0F) | (h0 << 4)) + m;
        y[j + 16] = d * f32::from((qs[j] >> 4) | (h1 << 4)) + m;
    }
}

/// Q8_0 (34 bytes / 32 values): `d: f16, qs: [i8; 32]`; `x = d * q`.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (v, &q) in y.iter_mut().zip(&b[2..34]) {
        *v = d * f32::from(q as i8);
    }
}

/// Q2_K (84 bytes / 256 values): `scales: [u8; 16] (low nibble scale, high
/// nibble min, one pair per 16 values), qs: [u8; 64], d: f16, dmin: f16`.
/// Value `g*128 + s*32 + l` is bits `2s..2s+2` of `qs[g*32 + l]`;
/// `x = (d * sc) * q - (dmin * m)`.
fn block_q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = f16_at(b, 80);
    let dmin = f16_at(b, 82);
    for (i, v) in y.iter_mut().enumerate() {
        let (g, s, l) = (i / 128, (i / 32) % 4, i % 32);
        let q = (qs[g * 32 + l] >> (2 * s)) & 3;
        let sc = scales[i / 16];
        let dl = d * f32::from(sc & 0x0F);
        let ml = dmin * f32::from(sc >> 4);
        *v = dl * f32::from(q) - ml;
    }
}

/// Q3_K (110 bytes / 256 values): `hmask: [u8; 32], qs: [u8; 64],
/// scales: [u8; 12] (16 six-bit scales, offset 32), d: f16`. Value
/// `i = g*128 + s*32 + l` has low bits `2s..2s+2` of `qs[g*32 + l]` and high
/// bit `i / 32` of `hmask[l]`; a clear high bit subtracts 4. `x = (d * sc) * q`.
fn block_q3_k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let sb = &b[96..108];
    let d = f16_at(b, 108);
    let mut dl = [0f32; 16];
    for (k, out) in dl.iter_mut().enumerate() {
        let low = (sb[k % 8] >> (4 * (k / 8))) & 0x0F;
        let high = (sb[8 + k % 4] >> (2 * (k / 4))) & 0x03;
        *out = d * f32::from(((low | (high << 4)) as i8) - 32);
    }
    for (i, v) in y.iter_mut().enumerate() {
        let (g, s, l) = (i / 128, (i / 32) % 4, i % 32);
        let low = ((qs[g * 32 + l] >> (2 * s)) & 3) as i8;
        let high = (hmask[l] >> (i / 32)) & 1;
        let q = if high == 0 { low - 4 } else { low };
        *v = dl[i / 16] * f32::from(q);
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block from
/// its 12 packed bytes (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K (144 bytes / 256 values): `d: f16, dmin: f16, scales: [u8; 12],
/// qs: [u8; 128]`; eight sub-blocks of 32, sub-block `2g` in the low nibbles of
/// `qs[32g..32g+32]`, `2g+1` in the high nibbles; `x = (d * sc) * q - dmin * m`.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (sub, ys) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(sub, scales);
        let dl = d * f32::from(sc);
        let ml = dmin * f32::from(m);
        let shift = 4 * (sub % 2);
        let q = &qs[32 * (sub / 2)..32 * (sub / 2) + 32];
        for (v, &byte) in ys.iter_mut().zip(q) {
            *v = dl * f32::from((byte >> shift) & 0x0F) - ml;
        }
    }
}

/// Q5_K (176 bytes / 256 values): `d: f16, dmin: f16, scales: [u8; 12],
/// qh: [u8; 32], qs: [u8; 128]`; as Q4_K, plus bit `sub` of `qh[l]` as the
/// fifth bit of value `l` of sub-block `sub`.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (sub, ys) in y.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min_k4(sub, scales);
        let dl = d * f32::from(sc);
        let ml = dmin * f32::from(m);
        let shift = 4 * (sub % 2);
        let q = &qs[32 * (sub / 2)..32 * (sub / 2) + 32];
        for (l, v) in ys.iter_mut().enumerate() {
            let high = ((qh[l] >> sub) & 1) << 4;
            *v = dl * f32::from(((q[l] >> shift) & 0x0F) | high) - ml;
        }
    }
}

/// Q6_K (210 bytes / 256 values): `ql: [u8; 128], qh: [u8; 64],
/// scales: [i8; 16] (one per 16 values), d: f16`. In half `g` (128 values),
/// value `r` has low nibble `r / 64` of `ql[64g + r % 64]` and bits
/// `2(r / 32)..+2` of `qh[32g + r % 32]`; `x = (d * sc) * (q - 32)`.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let ql = &b[0..128];
    let qh = &b[128..192];
    let scales = &b[192..208];
    let d = f16_at(b, 208);
    for (i, v) in y.iter_mut().enumerate() {
        let (g, r) = (i / 128, i % 128);
        let low = (ql[64 * g + r % 64] >> (4 * (r / 64))) & 0x0F;
        let high = (qh[32 * g + r % 32] >> (2 * (r / 32))) & 0x03;
        let q = ((low | (high << 4)) as i8) - 32;
        let dl = d * f32::from(scales[i / 16] as i8);
        *v = dl * f32::from(q);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Directory of the golden data written by `make_dequant_fixtures.py`.
    pub(crate) fn fixture_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dequant")
    }

    pub(crate) fn read_f32s(path: &std::path::Path) -> Vec<f32> {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    pub(crate) fn manifest() -> serde_json::Value {
        let path = fixture_dir().join("manifest.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("manifest.json parses")
    }

    /// Bit-exact agreement with gguf-py on every supported block type:
    /// both compute each value with the same f32 operations in the same order.
    #[test]
    fn matches_gguf_py_bit_for_bit() {
        let manifest = manifest();
        let cases = manifest["blocks"].as_array().expect("blocks");
        let mut seen = Vec::new();
        for case in cases {
            let name = case["type"].as_str().expect("type");
            let ty = GgmlType::ALL.into_iter().find(|t| t.name() == name).expect("known type");
            let n = case["n_elements"].as_u64().expect("n") as usize;
            let raw = std::fs::read(fixture_dir().join(case["raw"].as_str().expect("raw"))).expect("raw file");
            let want = read_f32s(&fixture_dir().join(case["ref"].as_str().expect("ref")));
            let got = dequantize(ty, &raw, n).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.len(), want.len(), "{name}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{name} element {i}: got {g}, gguf-py {w}");
            }
            seen.push(ty);
        }
        for ty in GgmlType::ALL.into_iter().filter(|t| t.is_supported()) {
            assert!(seen.contains(&ty), "no golden data for supported type {ty}");
        }
    }

    #[test]
    fn type_ids_round_trip_and_unknown_ids_are_rejected() {
        for ty in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 40, 1000, u32::MAX] {
            assert_eq!(GgmlType::from_id(id), None, "id {id}");
        }
    }

    #[test]
    fn sizes_match_ggml() {
        assert_eq!(GgmlType::Q4_1.bytes_for(64), Some(40));
        assert_eq!(GgmlType::Q6_K.bytes_for(512), Some(420));
        assert_eq!(GgmlType::Q4_K.bytes_for(100), None);
        assert_eq!(GgmlType::F32.bytes_for(usize::MAX), None);
    }

    #[test]
    fn wrong_lengths_and_unsupported_types_are_errors() {
        assert!(matches!(
            dequantize(GgmlType::Q4_0, &[0; 17], 32),
            Err(DequantError::Length { expected: 18, found: 17, .. })
        ));
        assert!(matches!(dequantize(GgmlType::Q4_0, &[0; 18], 31), Err(DequantError::PartialBlock { .. })));
        assert_eq!(dequantize(GgmlType::IQ2_XS, &[0; 74], 256), Err(DequantError::Unsupported(GgmlType::IQ2_XS)));
    }

    #[test]
    fn q8_0_scales_signed_values() {
        let mut block = vec![0u8; 34];
        block[..2].copy_from_slice(&f16::from_f32(0.5).to_bits().to_le_bytes());
        block[2] = 4;
        block[3] = (-6i8) as u8;
        let y = dequantize(GgmlType::Q8_0, &block, 32).expect("valid block");
        assert_eq!(&y[..3], &[2.0, -3.0, 0.0]);
    }

    #[test]
    fn plain_float_types_convert_across_task_boundaries() {
        let n = 256 * BLOCKS_PER_TASK + 3;
        let values: Vec<f32> = (0..n).map(|i| i as f32 * 0.25).collect();
        let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(dequantize(GgmlType::F32, &f32_bytes, n).expect("f32"), values);
        let bf16_bytes: Vec<u8> = values.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
        let small: Vec<f32> = values.iter().map(|v| f32::from_bits(v.to_bits() & 0xFFFF_0000)).collect();
        assert_eq!(dequantize(GgmlType::BF16, &bf16_bytes, n).expect("bf16"), small);
    }
}
