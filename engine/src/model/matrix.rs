//! A weight matrix as the model file stores it: [`Matrix`] holds either f32
//! values or ggml blocks (Q4_0, Q4_1, Q8_0, the K-quants...) byte for byte as
//! in the GGUF file, so a forward pass reads the compact bytes.
//!
//! The values of a block matrix are by definition what [`dequantize`] makes
//! of its bytes (bit-exact against gguf-py); [`Matrix::dequantize_rows`] is
//! the one way to read them as f32, and the backends' fused kernels are
//! tested against it.

use std::borrow::Cow;
use std::ops::Range;

use super::dequant::{dequantize, GgmlType};
use super::TensorSource;
use crate::error::{Error, Result};

/// A row-major matrix; `rows` is the output dimension of a projection.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    storage: Storage, // (rows, cols)
}

/// How a [`Matrix`] keeps its values.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// (rows, cols) values.
    F32(Vec<f32>),
    /// (rows, cols / block_size) ggml blocks of `ty`, `ty.type_size()` bytes
    /// each, as in the file; every row is a whole number of blocks.
    Blocks { ty: GgmlType, bytes: Vec<u8> },
}

/// Why a matrix could not be built. The caller adds the file and tensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    #[error("a {rows}x{cols} matrix needs {rows}*{cols} values, found {found}")]
    Length { rows: usize, cols: usize, found: usize },
    #[error("{0} is not a block type kept compact")]
    NotBlockType(GgmlType),
    #[error("rows of {cols} values are not whole {ty} blocks of {block_size}")]
    PartialRow { ty: GgmlType, cols: usize, block_size: usize },
    #[error("a {rows}x{cols} {ty} matrix needs {expected:?} bytes, found {found}")]
    Bytes { ty: GgmlType, rows: usize, cols: usize, expected: Option<usize>, found: usize },
}

impl Matrix {
    /// A matrix of f32 values, (rows, cols) row-major.
    pub fn from_f32(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self, MatrixError> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(MatrixError::Length { rows, cols, found: data.len() });
        }
        Ok(Self { rows, cols, storage: Storage::F32(data) })
    }

    /// A matrix of ggml blocks of type `ty` ([`Matrix::keeps_blocks`]), rows of
    /// `cols / ty.block_size()` blocks, as GGUF stores a 2-D tensor.
    pub fn from_blocks(rows: usize, cols: usize, ty: GgmlType, bytes: Vec<u8>) -> Result<Self, MatrixError> {
        if !Self::keeps_blocks(ty) {
            return Err(MatrixError::NotBlockType(ty));
        }
        let block_size = ty.block_size();
        let row_bytes = ty.bytes_for(cols).ok_or(MatrixError::PartialRow { ty, cols, block_size })?;
        let expected = rows.checked_mul(row_bytes);
        if expected != Some(bytes.len()) {
            return Err(MatrixError::Bytes { ty, rows, cols, expected, found: bytes.len() });
        }
        Ok(Self { rows, cols, storage: Storage::Blocks { ty, bytes } })
    }

    /// Whether a tensor of type `ty` is kept as blocks: the block-quantized
    /// types [`dequantize`] converts. Plain float types (F16, BF16) are
    /// converted to f32 at load instead.
    pub fn keeps_blocks(ty: GgmlType) -> bool {
        ty.block_size() > 1 && ty.is_supported()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Bytes one row occupies in memory.
    pub fn row_bytes(&self) -> usize {
        match &self.storage {
            Storage::F32(_) => self.cols * std::mem::size_of::<f32>(),
            Storage::Blocks { bytes, .. } => bytes.len().checked_div(self.rows).unwrap_or(0),
        }
    }

    /// Bytes the whole matrix occupies in memory (what a product reads).
    pub fn stored_bytes(&self) -> usize {
        self.rows * self.row_bytes()
    }

    /// Rows `rows` as f32, (rows.len(), cols) row-major: borrowed for an f32
    /// matrix, dequantized with [`dequantize`] for a block matrix.
    ///
    /// Panics when `rows` reaches past the matrix, as slicing does.
    pub fn dequantize_rows(&self, rows: Range<usize>) -> Cow<'_, [f32]> {
        assert!(rows.start <= rows.end && rows.end <= self.rows, "rows {rows:?} of a {}-row matrix", self.rows);
        match &self.storage {
            Storage::F32(data) => Cow::Borrowed(&data[rows.start * self.cols..rows.end * self.cols]),
            Storage::Blocks { ty, bytes } => {
                let row_bytes = self.row_bytes();
                let slice = &bytes[rows.start * row_bytes..rows.end * row_bytes];
                // The constructor checked the type is convertible and every
                // row is whole blocks, the only ways `dequantize` can fail.
                let values = dequantize(*ty, slice, rows.len() * self.cols)
                    .unwrap_or_else(|e| unreachable!("blocks were validated when the matrix was built: {e}"));
                Cow::Owned(values)
            }
        }
    }

    /// Turns a block matrix into an f32 matrix of the same values (those of
    /// [`Matrix::dequantize_rows`]); an f32 matrix stays as it is.
    pub fn convert_to_f32(&mut self) {
        if let Storage::Blocks { .. } = self.storage {
            self.storage = Storage::F32(self.dequantize_rows(0..self.rows).into_owned());
        }
    }

    /// Reorders whole rows: row `to` of the result is row `source_of(to)` of
    /// `self`. `source_of` must be a permutation of `0..rows`. Rows of block
    /// matrices move as byte ranges, so values are untouched.
    pub fn reorder_rows(&mut self, source_of: impl Fn(usize) -> usize) {
        let rows = self.rows;
        match &mut self.storage {
            Storage::F32(data) => *data = reordered(data, rows, &source_of),
            Storage::Blocks { bytes, .. } => *bytes = reordered(bytes, rows, &source_of),
        }
    }
}

/// `data` as `rows` equal rows, reordered so that row `to` is `source_of(to)`.
fn reordered<T: Copy>(data: &[T], rows: usize, source_of: &impl Fn(usize) -> usize) -> Vec<T> {
    let len = data.len().checked_div(rows).unwrap_or(0);
    let mut out = Vec::with_capacity(data.len());
    for to in 0..rows {
        let from = source_of(to);
        out.extend_from_slice(&data[from * len..(from + 1) * len]);
    }
    out
}

/// The default [`TensorSource::load_matrix`]: the tensor converted to f32.
pub fn load_f32_matrix<S: TensorSource + ?Sized>(source: &S, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
    let tensor = source.load_f32(name)?;
    Matrix::from_f32(rows, cols, tensor.data).map_err(|_| Error::TensorShape {
        path: source.path().to_owned(),
        tensor: name.to_owned(),
        expected: vec![rows, cols],
        found: tensor.shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Q8_0 blocks (d = 1.0 and d = 0.5) forming a 2x32 matrix.
    fn q8_0_matrix() -> Matrix {
        let mut bytes = Vec::new();
        for (d, base) in [(half::f16::from_f32(1.0), 0i8), (half::f16::from_f32(0.5), -16)] {
            bytes.extend_from_slice(&d.to_le_bytes());
            bytes.extend((0..32).map(|i| (base + i as i8) as u8));
        }
        Matrix::from_blocks(2, 32, GgmlType::Q8_0, bytes).expect("valid blocks")
    }

    #[test]
    fn block_rows_dequantize_as_dequant_does() {
        let m = q8_0_matrix();
        assert_eq!(m.row_bytes(), 34);
        assert_eq!(m.stored_bytes(), 68);
        let Storage::Blocks { bytes, .. } = m.storage() else { panic!("kept as blocks") };
        let all = dequantize(GgmlType::Q8_0, bytes, 64).expect("dequantizes");
        assert_eq!(m.dequantize_rows(0..2)[..], all[..]);
        assert_eq!(m.dequantize_rows(1..2)[..], all[32..]);
        assert_eq!(m.dequantize_rows(1..2)[0], -8.0);
        let mut dense = m.clone();
        dense.convert_to_f32();
        assert_eq!(dense.storage(), &Storage::F32(all));
        assert_eq!((dense.rows(), dense.cols(), dense.stored_bytes()), (2, 32, 2 * 32 * 4));
    }

    #[test]
    fn bad_shapes_and_types_are_errors() {
        assert!(matches!(Matrix::from_f32(2, 3, vec![0.0; 5]), Err(MatrixError::Length { found: 5, .. })));
        assert!(matches!(Matrix::from_f32(usize::MAX, 2, vec![]), Err(MatrixError::Length { .. })));
        assert_eq!(
            Matrix::from_blocks(1, 32, GgmlType::F16, vec![0; 64]),
            Err(MatrixError::NotBlockType(GgmlType::F16))
        );
        assert!(matches!(Matrix::from_blocks(1, 48, GgmlType::Q8_0, vec![0; 34]), Err(MatrixError::PartialRow { .. })));
        assert!(matches!(
            Matrix::from_blocks(2, 32, GgmlType::Q8_0, vec![0; 34]),
            Err(MatrixError::Bytes { expected: Some(68), found: 34, .. })
        ));
        assert!(matches!(
            Matrix::from_blocks(usize::MAX, 32, GgmlType::Q8_0, vec![]),
            Err(MatrixError::Bytes { expected: None, .. })
        ));
    }

    #[test]
    fn reorder_moves_whole_rows_of_both_storages() {
        let mut blocks = q8_0_matrix();
        let before = blocks.dequantize_rows(0..2).into_owned();
        blocks.reorder_rows(|to| 1 - to);
        assert_eq!(blocks.dequantize_rows(0..1)[..], before[32..]);
        assert_eq!(blocks.dequantize_rows(1..2)[..], before[..32]);

        let mut dense = Matrix::from_f32(3, 2, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).expect("valid");
        dense.reorder_rows(|to| (to + 1) % 3);
        assert_eq!(dense.dequantize_rows(0..3)[..], [2.0, 3.0, 4.0, 5.0, 0.0, 1.0]);
    }
}
