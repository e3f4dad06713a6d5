//! GGUF model files: [`GgufFile`] memory-maps a file, parses and validates its
//! header, metadata ([`MetaValue`]) and tensor table ([`TensorInfo`]), and
//! serves tensors through [`TensorSource`], dequantizing them with
//! [`super::dequant`].
//!
//! Layout (GGUF v2/v3, little-endian):
//! ```text
//! magic "GGUF" | version: u32 | tensor_count: u64 | kv_count: u64
//! kv_count x  (key: string, value_type: u32, value)
//! tensor_count x (name: string, n_dims: u32, ne: [u64; n_dims], type: u32, offset: u64)
//! padding to `general.alignment` (default 32) | data section
//! string = len: u64, UTF-8 bytes;  array = elem_type: u32, len: u64, elements
//! ```
//! Every count, length and offset comes from the file and is checked against
//! its size before anything is allocated or sliced, so a truncated or corrupt
//! file is an [`Error::Format`], never a panic or a huge allocation. In
//! particular every tensor's byte range is checked at [`GgufFile::open`].

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::dequant::{dequantize, DequantError, GgmlType};
use super::matrix::{load_f32_matrix, Matrix};
use super::{HostTensor, TensorSource};
use crate::error::{Error, Result};

/// Bytes of the fixed header: magic, version, tensor count, metadata count.
const HEADER_LEN: usize = 4 + 4 + 8 + 8;
/// Data-section alignment when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Deepest array nesting accepted (real files use 1); bounds the recursion.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Smallest possible encoded tensor info: empty name, 0 dims, type, offset.
const MIN_TENSOR_INFO_LEN: usize = 8 + 4 + 4 + 8;
/// Smallest possible encoded metadata entry: empty key, type, one-byte value.
const MIN_KV_LEN: usize = 8 + 4 + 1;

/// One metadata value, as typed in the file (GGUF value types 0-12).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The GGUF name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::Array(_) => "array",
        }
    }

    /// The value of any integer type, widened to i128 (which holds them all).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// An F32 value, or an F64 value rounded to f32.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Extents in GGUF `ne` order: `dims[0]` is the contiguous (innermost)
    /// axis, so a linear layer `[out, in]` is stored as `[in, out]`.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Row-major (PyTorch order) shape: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        // Fits: open() checked that the product of dims fits in usize.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements (1 for a tensor with no dims).
    pub fn n_elements(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }
}

/// An open, validated GGUF file. Tensor data stays in the memory map until
/// [`TensorSource::load_f32`] converts it.
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    /// Tensor name -> index into `tensors` and `ranges`.
    by_name: BTreeMap<String, usize>,
    /// Absolute byte range of each tensor's data in the file.
    ranges: Vec<Range<usize>>,
    data_offset: usize,
    alignment: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and validates the file: header, every metadata value, every tensor
    /// info, the alignment and every tensor's byte range.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < HEADER_LEN as u64 {
            return Err(format_error(path, format!("file is {len} bytes, shorter than the {HEADER_LEN}-byte header")));
        }
        // SAFETY: the map is read-only and private to this struct. As with any
        // mmap, another process truncating or rewriting the file while it is
        // open is undefined behaviour; model files are not modified in place.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let parsed = parse(&mmap).map_err(|what| format_error(path, what))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap,
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            by_name: parsed.by_name,
            ranges: parsed.ranges,
            data_offset: parsed.data_offset,
            alignment: parsed.alignment,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of every tensor offset.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset where the data section starts.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// All metadata keys, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.metadata.keys().map(String::as_str)
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.get(key).ok_or_else(|| Error::MissingKey { path: self.path.clone(), key: key.to_owned() })
    }

    fn bad_key(&self, key: &str, expected: &str, found: &MetaValue) -> Error {
        let value = match *found {
            MetaValue::U8(v) => v.to_string(),
            MetaValue::I8(v) => v.to_string(),
            MetaValue::U16(v) => v.to_string(),
            MetaValue::I16(v) => v.to_string(),
            MetaValue::U32(v) => v.to_string(),
            MetaValue::I32(v) => v.to_string(),
            MetaValue::U64(v) => v.to_string(),
            MetaValue::I64(v) => v.to_string(),
            MetaValue::F32(v) => v.to_string(),
            MetaValue::F64(v) => v.to_string(),
            MetaValue::Bool(v) => v.to_string(),
            MetaValue::String(_) | MetaValue::Array(_) => String::new(),
        };
        let found = format!("{} {value}", found.type_name()).trim_end().to_owned();
        Error::BadKey { path: self.path.clone(), key: key.to_owned(), expected: format!("{expected}, found {found}") }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| self.bad_key(key, "a string", v))
    }

    /// An integer of any type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_integer()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| self.bad_key(key, "an integer in u32 range", v))
    }

    /// An integer of any type whose value fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| self.bad_key(key, "an integer in u64 range", v))
    }

    /// An F32, or an F64 rounded to f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f32().ok_or_else(|| self.bad_key(key, "a float", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            MetaValue::Bool(b) => Ok(*b),
            v => Err(self.bad_key(key, "a bool", v)),
        }
    }

    pub fn get_array(&self, key: &str) -> Result<&[MetaValue]> {
        match self.require(key)? {
            MetaValue::Array(a) => Ok(a),
            v => Err(self.bad_key(key, "an array", v)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        let items = self.get_array(key)?;
        items
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.bad_element(key, "strings", items))
    }

    /// Elements of any integer type whose values fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        let items = self.get_array(key)?;
        items
            .iter()
            .map(|v| v.as_integer().and_then(|i| i32::try_from(i).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.bad_element(key, "integers in i32 range", items))
    }

    /// Elements of type F32 or F64 (rounded to f32).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        let items = self.get_array(key)?;
        items
            .iter()
            .map(MetaValue::as_f32)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.bad_element(key, "floats", items))
    }

    fn bad_element(&self, key: &str, expected: &str, items: &[MetaValue]) -> Error {
        let found = items.first().map_or("nothing", MetaValue::type_name);
        Error::BadKey {
            path: self.path.clone(),
            key: key.to_owned(),
            expected: format!("an array of {expected}, found an array of {found}"),
        }
    }

    /// [`Self::get_str`] for an optional key: `Ok(None)` when absent, an error
    /// when present with the wrong type.
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|_| self.get_str(key)).transpose()
    }

    /// [`Self::get_u32`] for an optional key.
    pub fn get_u32_opt(&self, key: &str) -> Result<Option<u32>> {
        self.get(key).map(|_| self.get_u32(key)).transpose()
    }

    /// [`Self::get_f32`] for an optional key.
    pub fn get_f32_opt(&self, key: &str) -> Result<Option<f32>> {
        self.get(key).map(|_| self.get_f32(key)).transpose()
    }

    /// [`Self::get_bool`] for an optional key.
    pub fn get_bool_opt(&self, key: &str) -> Result<Option<bool>> {
        self.get(key).map(|_| self.get_bool(key)).transpose()
    }

    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// The tensor table, in file order.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw (possibly quantized) bytes of a tensor, straight from the map.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let &i = self.by_name.get(name).ok_or_else(|| self.missing(name))?;
        Ok(&self.mmap[self.ranges[i].clone()])
    }

    fn missing(&self, name: &str) -> Error {
        Error::MissingTensor { path: self.path.clone(), tensor: name.to_owned() }
    }
}

impl TensorSource for GgufFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.tensor_info(name).map(TensorInfo::shape).ok_or_else(|| self.missing(name))
    }

    fn load_f32(&self, name: &str) -> Result<HostTensor> {
        let info = self.tensor_info(name).ok_or_else(|| self.missing(name))?;
        let bytes = self.tensor_bytes(name)?;
        let data = dequantize(info.ggml_type, bytes, info.n_elements()).map_err(|e| match e {
            DequantError::Unsupported(ty) => {
                Error::TensorDtype { path: self.path.clone(), tensor: name.to_owned(), dtype: ty.name().to_owned() }
            }
            other => format_error(&self.path, format!("tensor `{name}`: {other}")),
        })?;
        Ok(HostTensor { shape: info.shape(), data })
    }

    /// Quantized blocks stay as they are in the file; see [`Matrix`].
    fn load_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let info = self.tensor_info(name).ok_or_else(|| self.missing(name))?;
        if !Matrix::keeps_blocks(info.ggml_type) {
            return load_f32_matrix(self, name, rows, cols);
        }
        let bytes = self.tensor_bytes(name)?.to_vec();
        Matrix::from_blocks(rows, cols, info.ggml_type, bytes)
            .map_err(|e| format_error(&self.path, format!("tensor `{name}`: {e}")))
    }
}

fn format_error(path: &Path, what: String) -> Error {
    Error::Format { path: path.to_path_buf(), format: "GGUF", what }
}

/// Everything [`parse`] extracts from the bytes.
struct Parsed {
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    by_name: BTreeMap<String, usize>,
    ranges: Vec<Range<usize>>,
    data_offset: usize,
    alignment: u64,
}

/// Parses and validates a whole GGUF image; the error says where and why.
fn parse(buf: &[u8]) -> Result<Parsed, String> {
    let mut r = Reader { buf, pos: 0 };
    let magic = r.take(4, "magic")?;
    if magic != b"GGUF" {
        return Err(format!("bad magic {magic:02x?}, expected \"GGUF\""));
    }
    let version = r.u32("version")?;
    match version {
        2 | 3 => {}
        1 => return Err("GGUF version 1 is not supported (only 2 and 3); re-convert the model".to_owned()),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err("big-endian GGUF files are not supported".to_owned())
        }
        v => return Err(format!("unsupported GGUF version {v} (only 2 and 3)")),
    }
    let tensor_count = r.u64("tensor count")?;
    let kv_count = r.u64("metadata count")?;
    let rest = r.remaining() as u64;
    if kv_count > rest / MIN_KV_LEN as u64 {
        return Err(format!("metadata count {kv_count} cannot fit in the {rest} bytes after the header"));
    }
    if tensor_count > rest / MIN_TENSOR_INFO_LEN as u64 {
        return Err(format!("tensor count {tensor_count} cannot fit in the {rest} bytes after the header"));
    }

    let mut metadata = BTreeMap::new();
    for i in 0..kv_count {
        let key = r.string("metadata key").map_err(|e| format!("metadata entry #{i}: {e}"))?;
        let value = r.value(0).map_err(|e| format!("metadata key `{key}`: {e}"))?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(format!("metadata key `{key}` appears twice"));
        }
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_integer().and_then(|a| u32::try_from(a).ok()) {
            Some(a) if a.is_power_of_two() => u64::from(a),
            _ => return Err(format!("general.alignment must be a nonzero power of two, found {v:?}")),
        },
    };

    // Tensor count is bounded by the file size above, so this allocation is too.
    let mut tensors = Vec::with_capacity(tensor_count as usize);
    let mut by_name = BTreeMap::new();
    let mut sizes = Vec::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let (info, n_bytes) = r.tensor_info().map_err(|e| format!("tensor info #{i}: {e}"))?;
        if by_name.insert(info.name.clone(), tensors.len()).is_some() {
            return Err(format!("tensor `{}` appears twice", info.name));
        }
        tensors.push(info);
        sizes.push(n_bytes);
    }

    let data_offset = (r.pos as u64).next_multiple_of(alignment);
    let file_len = buf.len() as u64;
    let mut ranges = Vec::with_capacity(tensors.len());
    for (info, &n_bytes) in tensors.iter().zip(&sizes) {
        if info.offset % alignment != 0 {
            return Err(format!(
                "tensor `{}`: offset {} is not a multiple of the alignment {alignment}",
                info.name, info.offset
            ));
        }
        let range = data_offset
            .checked_add(info.offset)
            .and_then(|start| Some(start..start.checked_add(n_bytes)?))
            .filter(|range| range.end <= file_len)
            .ok_or_else(|| {
                format!(
                    "tensor `{}`: {n_bytes} bytes at data offset {} run past the end of the file ({file_len} bytes, data section at {data_offset})",
                    info.name, info.offset
                )
            })?;
        // Both ends are <= file_len, which is a usize.
        ranges.push(range.start as usize..range.end as usize);
    }
    Ok(Parsed {
        version,
        metadata,
        tensors,
        by_name,
        ranges,
        data_offset: data_offset.min(file_len) as usize,
        alignment,
    })
}

/// A bounds-checked little-endian cursor over the mapped file.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.remaining() {
            return Err(format!(
                "file ends while reading {what} at byte {} ({n} bytes needed, {} left)",
                self.pos,
                self.remaining()
            ));
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(format!(
                "{what} of {len} bytes at byte {} runs past the end of the file ({} bytes left)",
                self.pos,
                self.remaining()
            ));
        }
        let start = self.pos;
        let bytes = self.take(len as usize, what)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| format!("{what} at byte {start} is not UTF-8: {e}"))
    }

    /// Reads a type tag and the value after it.
    fn value(&mut self, depth: u32) -> Result<MetaValue, String> {
        let ty = self.u32("value type")?;
        self.typed_value(ty, depth)
    }

    fn typed_value(&mut self, ty: u32, depth: u32) -> Result<MetaValue, String> {
        Ok(match ty {
            0 => MetaValue::U8(u8::from_le_bytes(self.array("u8")?)),
            1 => MetaValue::I8(i8::from_le_bytes(self.array("i8")?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array("u16")?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array("i16")?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.array("u32")?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.array("i32")?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array("f32")?)),
            7 => match self.array::<1>("bool")? {
                [0] => MetaValue::Bool(false),
                [1] => MetaValue::Bool(true),
                [b] => return Err(format!("bool byte {b} at byte {} is neither 0 nor 1", self.pos - 1)),
            },
            8 => MetaValue::String(self.string("string")?),
            9 => self.array_value(depth)?,
            10 => MetaValue::U64(u64::from_le_bytes(self.array("u64")?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.array("i64")?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array("f64")?)),
            other => return Err(format!("unknown value type {other} at byte {}", self.pos - 4)),
        })
    }

    fn array_value(&mut self, depth: u32) -> Result<MetaValue, String> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
        }
        let elem_ty = self.u32("array element type")?;
        let len_pos = self.pos;
        let len = self.u64("array length")?;
        let min_elem_len: u64 = match elem_ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => 4 + 8,
            other => return Err(format!("unknown array element type {other} at byte {}", len_pos - 4)),
        };
        if len > self.remaining() as u64 / min_elem_len {
            return Err(format!(
                "array length {len} at byte {len_pos} cannot fit in the {} bytes left",
                self.remaining()
            ));
        }
        let mut items = Vec::with_capacity(len as usize);
        for i in 0..len {
            items.push(self.typed_value(elem_ty, depth + 1).map_err(|e| format!("element {i}: {e}"))?);
        }
        Ok(MetaValue::Array(items))
    }

    /// One tensor info and its data size in bytes, validated on its own
    /// (the offset is checked against the data section by the caller).
    fn tensor_info(&mut self) -> Result<(TensorInfo, u64), String> {
        let name = self.string("tensor name")?;
        let ctx = |e: String| format!("tensor `{name}`: {e}");
        let n_dims = self.u32("dimension count").map_err(ctx)?;
        if n_dims > MAX_DIMS {
            return Err(ctx(format!("{n_dims} dimensions (at most {MAX_DIMS})")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64("dimension").map_err(ctx)?);
        }
        let type_pos = self.pos;
        let type_id = self.u32("type").map_err(ctx)?;
        let offset = self.u64("offset").map_err(ctx)?;
        let ggml_type = GgmlType::from_id(type_id)
            .ok_or_else(|| ctx(format!("unknown ggml type id {type_id} at byte {type_pos}")))?;
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64 && usize::try_from(n).is_ok())
            .ok_or_else(|| ctx(format!("dimensions {dims:?} overflow the element count")))?;
        let block = ggml_type.block_size() as u64;
        if dims.first().is_some_and(|&d0| d0 % block != 0) || (dims.is_empty() && block != 1) {
            return Err(ctx(format!("row length {dims:?}[0] is not a multiple of the {ggml_type} block size {block}")));
        }
        let n_bytes = ggml_type
            .bytes_for(n_elements as usize)
            .ok_or_else(|| ctx(format!("dimensions {dims:?} overflow the byte size")))?;
        Ok((TensorInfo { name, dims, ggml_type, offset }, n_bytes as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A GGUF image under construction (test-only writer).
    struct Builder {
        version: u32,
        kvs: Vec<(String, Vec<u8>)>,
        /// (name, dims, type id, data bytes)
        tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
        alignment: u64,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// Encodes a value with its type tag.
    fn enc(v: &MetaValue) -> Vec<u8> {
        let mut out = Vec::new();
        let (tag, body): (u32, Vec<u8>) = match v {
            MetaValue::U8(x) => (0, x.to_le_bytes().to_vec()),
            MetaValue::I8(x) => (1, x.to_le_bytes().to_vec()),
            MetaValue::U16(x) => (2, x.to_le_bytes().to_vec()),
            MetaValue::I16(x) => (3, x.to_le_bytes().to_vec()),
            MetaValue::U32(x) => (4, x.to_le_bytes().to_vec()),
            MetaValue::I32(x) => (5, x.to_le_bytes().to_vec()),
            MetaValue::F32(x) => (6, x.to_le_bytes().to_vec()),
            MetaValue::Bool(x) => (7, vec![u8::from(*x)]),
            MetaValue::String(s) => {
                let mut b = Vec::new();
                put_str(&mut b, s);
                (8, b)
            }
            MetaValue::Array(items) => {
                let mut b = Vec::new();
                let elem_tag = items.first().map_or(4, |i| u32::from_le_bytes(enc(i)[..4].try_into().expect("tag")));
                b.extend_from_slice(&elem_tag.to_le_bytes());
                b.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for i in items {
                    b.extend_from_slice(&enc(i)[4..]);
                }
                (9, b)
            }
            MetaValue::U64(x) => (10, x.to_le_bytes().to_vec()),
            MetaValue::I64(x) => (11, x.to_le_bytes().to_vec()),
            MetaValue::F64(x) => (12, x.to_le_bytes().to_vec()),
        };
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    impl Builder {
        fn new() -> Self {
            Builder { version: 3, kvs: Vec::new(), tensors: Vec::new(), alignment: 32 }
        }

        fn kv(mut self, key: &str, v: MetaValue) -> Self {
            self.kvs.push((key.to_owned(), enc(&v)));
            self
        }

        fn raw_kv(mut self, key: &str, encoded: Vec<u8>) -> Self {
            self.kvs.push((key.to_owned(), encoded));
            self
        }

        fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Self {
            self.tensors.push((name.to_owned(), dims.to_vec(), ty.id(), data));
            self
        }

        fn build(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend_from_slice(&self.version.to_le_bytes());
            out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
            out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
            for (k, v) in &self.kvs {
                put_str(&mut out, k);
                out.extend_from_slice(v);
            }
            let mut offset = 0u64;
            for (name, dims, ty, data) in &self.tensors {
                put_str(&mut out, name);
                out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
                for d in dims {
                    out.extend_from_slice(&d.to_le_bytes());
                }
                out.extend_from_slice(&ty.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
                offset = (offset + data.len() as u64).next_multiple_of(self.alignment);
            }
            out.resize((out.len() as u64).next_multiple_of(self.alignment) as usize, 0);
            // Padding between tensors but not after the last, as gguf-py writes.
            for (i, (_, _, _, data)) in self.tensors.iter().enumerate() {
                if i > 0 {
                    out.resize((out.len() as u64).next_multiple_of(self.alignment) as usize, 0);
                }
                out.extend_from_slice(data);
            }
            out
        }
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write temp file");
        f
    }

    fn open_bytes(bytes: &[u8]) -> Result<GgufFile> {
        let f = write(bytes);
        GgufFile::open(f.path())
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn sample() -> Builder {
        Builder::new()
            .kv("general.architecture", MetaValue::String("llama".into()))
            .kv("llama.block_count", MetaValue::U32(2))
            .kv("llama.big", MetaValue::U64(1 << 40))
            .kv("llama.neg", MetaValue::I32(-1))
            .kv("llama.eps", MetaValue::F32(1e-5))
            .kv("llama.theta", MetaValue::F64(10000.0))
            .kv("tokenizer.add_bos", MetaValue::Bool(true))
            .kv(
                "tokenizer.tokens",
                MetaValue::Array(vec![MetaValue::String("a".into()), MetaValue::String("bé".into())]),
            )
            .kv("tokenizer.types", MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(-3)]))
            .kv("scores", MetaValue::Array(vec![MetaValue::F32(0.5), MetaValue::F32(-1.0)]))
            .kv("nested", MetaValue::Array(vec![MetaValue::Array(vec![MetaValue::U8(1)]), MetaValue::Array(vec![])]))
            .tensor("w", &[3, 2], GgmlType::F32, f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
            .tensor("v", &[2], GgmlType::F32, f32_bytes(&[7.0, 8.0]))
    }

    #[test]
    fn reads_metadata_of_every_type() {
        let g = open_bytes(&sample().build()).expect("valid file");
        assert_eq!(g.version(), 3);
        assert_eq!(g.architecture().expect("arch"), "llama");
        assert_eq!(g.get_u32("llama.block_count").expect("u32"), 2);
        assert_eq!(g.get_u64("llama.big").expect("u64"), 1 << 40);
        assert!(matches!(g.get_u32("llama.big"), Err(Error::BadKey { .. })));
        assert!(matches!(g.get_u32("llama.neg"), Err(Error::BadKey { .. })));
        assert_eq!(g.get_f32("llama.eps").expect("f32"), 1e-5);
        assert_eq!(g.get_f32("llama.theta").expect("f64"), 10000.0);
        assert!(g.get_bool("tokenizer.add_bos").expect("bool"));
        assert_eq!(g.get_str_array("tokenizer.tokens").expect("strs"), vec!["a", "bé"]);
        assert_eq!(g.get_i32_array("tokenizer.types").expect("i32s"), vec![1, -3]);
        assert_eq!(g.get_f32_array("scores").expect("f32s"), vec![0.5, -1.0]);
        assert_eq!(g.get_array("nested").expect("nested").len(), 2);
        assert!(matches!(g.get_str_array("tokenizer.types"), Err(Error::BadKey { .. })));
        assert!(matches!(g.get_str("llama.block_count"), Err(Error::BadKey { .. })));
        assert!(matches!(g.get_str("nope"), Err(Error::MissingKey { key, .. }) if key == "nope"));
        assert_eq!(g.get_u32_opt("nope").expect("absent is fine"), None);
        assert!(g.get_u32_opt("llama.eps").is_err());
        assert_eq!(g.keys().count(), 11);
    }

    #[test]
    fn loads_tensors_in_row_major_shape() {
        let g = open_bytes(&sample().build()).expect("valid file");
        assert_eq!(g.tensor_infos().len(), 2);
        assert_eq!(g.tensor_info("w").expect("w").dims, vec![3, 2]);
        assert_eq!(g.shape("w").expect("shape"), vec![2, 3]);
        let t = g.load_f32("w").expect("load");
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(g.load_f32("v").expect("load v").data, vec![7.0, 8.0]);
        assert_eq!(g.data_offset() % 32, 0);
        assert!(matches!(g.load_f32("x"), Err(Error::MissingTensor { .. })));
    }

    #[test]
    fn version_2_is_accepted_and_others_rejected() {
        let mut b = sample();
        b.version = 2;
        assert_eq!(open_bytes(&b.build()).expect("v2").version(), 2);
        for v in [0, 1, 4, 0x0300_0000] {
            b.version = v;
            let err = open_bytes(&b.build()).expect_err("bad version").to_string();
            assert!(err.contains("version") || err.contains("big-endian"), "{err}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().build();
        for n in 0..bytes.len() {
            assert!(open_bytes(&bytes[..n]).is_err(), "truncated to {n} of {} bytes opened", bytes.len());
        }
    }

    #[test]
    fn unsupported_type_is_a_typed_error_at_load() {
        let b = Builder::new().tensor("q", &[256], GgmlType::IQ2_XS, vec![0; 74]);
        let g = open_bytes(&b.build()).expect("known type opens");
        assert!(matches!(g.load_f32("q"), Err(Error::TensorDtype { dtype, .. }) if dtype == "IQ2_XS"));
    }

    #[test]
    fn bad_tensor_tables_are_rejected() {
        let unknown = Builder::new().tensor("t", &[4], GgmlType::F32, vec![0; 16]).build();
        // Type id sits right after the name (8 + 1 bytes), n_dims and one dim.
        let mut patched = unknown.clone();
        let info = HEADER_LEN + 8 + 1 + 4 + 8;
        patched[info..info + 4].copy_from_slice(&77u32.to_le_bytes());
        let err = open_bytes(&patched).expect_err("unknown type").to_string();
        assert!(err.contains("77"), "{err}");

        let cases = [
            Builder::new().tensor("t", &[1, 2, 3, 4, 5], GgmlType::F32, vec![0; 480]),
            Builder::new().tensor("t", &[u64::MAX, 2], GgmlType::F32, vec![]),
            Builder::new().tensor("t", &[1 << 62, 4], GgmlType::F32, vec![]),
            Builder::new().tensor("t", &[33], GgmlType::Q4_0, vec![0; 18]),
            Builder::new().tensor("t", &[4], GgmlType::F32, vec![0; 16]).tensor("t", &[4], GgmlType::F32, vec![0; 16]),
        ];
        for (i, b) in cases.iter().enumerate() {
            assert!(open_bytes(&b.build()).is_err(), "case {i} opened");
        }

        // Misaligned and out-of-range offsets.
        let mut misaligned = unknown.clone();
        let off = info + 4;
        misaligned[off..off + 8].copy_from_slice(&4u64.to_le_bytes());
        assert!(open_bytes(&misaligned).expect_err("misaligned").to_string().contains("alignment"));
        let mut far = unknown;
        far[off..off + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
        assert!(open_bytes(&far).is_err());
    }

    #[test]
    fn bad_metadata_is_rejected() {
        let huge_string = {
            let mut v = 8u32.to_le_bytes().to_vec();
            v.extend_from_slice(&u64::MAX.to_le_bytes());
            v
        };
        let huge_array = {
            let mut v = 9u32.to_le_bytes().to_vec();
            v.extend_from_slice(&8u32.to_le_bytes());
            v.extend_from_slice(&(1u64 << 60).to_le_bytes());
            v
        };
        let unknown_type = 13u32.to_le_bytes().to_vec();
        let unknown_elem = {
            let mut v = 9u32.to_le_bytes().to_vec();
            v.extend_from_slice(&99u32.to_le_bytes());
            v.extend_from_slice(&0u64.to_le_bytes());
            v
        };
        let bad_bool = vec![7, 0, 0, 0, 2];
        let bad_utf8 = {
            let mut v = 8u32.to_le_bytes().to_vec();
            v.extend_from_slice(&2u64.to_le_bytes());
            v.extend_from_slice(&[0xFF, 0xFE]);
            v
        };
        let deep = {
            let mut v = 9u32.to_le_bytes().to_vec();
            for _ in 0..=MAX_ARRAY_DEPTH {
                v.extend_from_slice(&9u32.to_le_bytes());
                v.extend_from_slice(&1u64.to_le_bytes());
            }
            v.extend_from_slice(&[0; 12]);
            v
        };
        for (i, raw) in
            [huge_string, huge_array, unknown_type, unknown_elem, bad_bool, bad_utf8, deep].into_iter().enumerate()
        {
            let b = Builder::new().kv("general.architecture", MetaValue::String("llama".into())).raw_kv("k", raw);
            assert!(open_bytes(&b.build()).is_err(), "case {i} opened");
        }
        let dup = Builder::new().kv("a", MetaValue::U8(1)).kv("a", MetaValue::U8(2));
        assert!(open_bytes(&dup.build()).is_err());
        for align in [MetaValue::U32(0), MetaValue::U32(24), MetaValue::String("32".into())] {
            let b = Builder::new().kv("general.alignment", align);
            assert!(open_bytes(&b.build()).expect_err("bad alignment").to_string().contains("alignment"));
        }
        let mut counts = sample().build();
        counts[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(open_bytes(&counts).expect_err("tensor count").to_string().contains("tensor count"));
        let mut counts = sample().build();
        counts[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(open_bytes(&counts).expect_err("kv count").to_string().contains("metadata count"));
    }

    /// Opens the real default model, dequantizes every tensor, and compares
    /// a few with gguf-py's output recorded by make_dequant_fixtures.py.
    #[test]
    fn default_model_dequantizes_like_gguf_py() {
        use crate::model::dequant::tests::{fixture_dir, manifest, read_f32s};
        let path = crate::home::default_model_path();
        assert!(path.exists(), "default model not found at {}: run `graft models fetch` first", path.display());
        let g = GgufFile::open(&path).expect("default model opens");
        assert_eq!(g.architecture().expect("arch"), "llama");
        let manifest = manifest();
        let tensors = manifest["model"]["tensors"].as_array().expect("model tensors");
        assert!(!tensors.is_empty());
        let compared: Vec<&str> = tensors.iter().map(|c| c["name"].as_str().expect("name")).collect();
        let mut loaded = std::collections::HashMap::new();
        for info in g.tensor_infos() {
            let t = g.load_f32(&info.name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.data.len(), info.n_elements());
            assert!(t.data.iter().all(|v| v.is_finite()), "{}: non-finite value", info.name);
            if compared.contains(&info.name.as_str()) {
                loaded.insert(info.name.clone(), t);
            }
        }
        for case in tensors {
            let name = case["name"].as_str().expect("name");
            let t = &loaded[name];
            let shape: Vec<usize> =
                case["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
            assert_eq!(t.shape, shape, "{name}");
            assert_eq!(g.tensor_info(name).expect("info").ggml_type.name(), case["type"].as_str().expect("type"));
            let edge = case["edge"].as_u64().expect("edge") as usize;
            let want = read_f32s(&fixture_dir().join(case["ref"].as_str().expect("ref")));
            let got: Vec<f32> = t.data[..edge].iter().chain(&t.data[t.data.len() - edge..]).copied().collect();
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{name} edge value {i}: got {a}, gguf-py {b}");
            }
            // Whole-tensor sums: f64 accumulation, so only the summation order differs.
            let sum: f64 = t.data.iter().map(|&v| f64::from(v)).sum();
            let sum_sq: f64 = t.data.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let (want_sum, want_sq) = (case["sum"].as_f64().expect("sum"), case["sum_sq"].as_f64().expect("sum_sq"));
            assert!((sum - want_sum).abs() <= 1e-9 * want_sq.max(1.0), "{name}: sum {sum} vs {want_sum}");
            assert!((sum_sq - want_sq).abs() <= 1e-9 * want_sq.max(1.0), "{name}: sum_sq {sum_sq} vs {want_sq}");
        }
    }

    #[test]
    fn custom_alignment_is_honoured() {
        let mut b = sample().kv("general.alignment", MetaValue::U32(64));
        b.alignment = 64;
        let g = open_bytes(&b.build()).expect("aligned to 64");
        assert_eq!(g.alignment(), 64);
        assert_eq!(g.data_offset() % 64, 0);
        assert_eq!(g.load_f32("v").expect("v").data, vec![7.0, 8.0]);
    }
}
