//! [`Gpu`]: one CUDA device with its stream and compiled kernels, device
//! buffers ([`Buf`]) and the launch wrappers. Each wrapper checks the sizes
//! of the buffers it is given against the kernel's shape (dtypes are the
//! buffers' element types), computes the grid, launches on the GPU's stream
//! and reports a launch failure as an error.
//!
//! Event tracking is off for the whole context: every launch and copy goes
//! to one stream, in order, and CUDA graphs capture without isolation
//! errors.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use std::ffi::c_void;
use std::ptr::null_mut;

use cudarc::driver::sys::{
    cuLaunchKernelEx, CUevent_flags, CUfunction_attribute, CUgraphInstantiate_flags, CUlaunchAttribute,
    CUlaunchAttributeID, CUlaunchAttributeValue, CUlaunchConfig, CUstreamCaptureMode,
};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, ValidAsZeroBits,
};
use half::bf16;

use crate::cache::{arch_for, load_or_compile, MODULES};
use crate::error::{KernelError, Result};
use crate::geometry::*;

/// A device allocation of `len` values of `T`.
pub struct Buf<T> {
    slice: CudaSlice<T>,
}

impl<T> Buf<T> {
    pub fn len(&self) -> usize {
        self.slice.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }

    /// The whole buffer as a launch argument.
    pub fn ptr(&self) -> Ptr<'_, T> {
        self.range(0, self.len()).expect("the whole buffer is in range")
    }

    /// `len` values from `offset`, or `None` past the end.
    pub fn range(&self, offset: usize, len: usize) -> Option<Ptr<'_, T>> {
        if offset.checked_add(len)? > self.len() {
            return None;
        }
        let (base, _sync) = self.slice.device_ptr(self.slice.stream());
        let raw = base + (offset * std::mem::size_of::<T>()) as u64;
        Some(Ptr { raw, len, _buf: std::marker::PhantomData })
    }
}

/// A checked view of part of a [`Buf`]: device address and length.
#[derive(Clone, Copy)]
pub struct Ptr<'a, T> {
    raw: u64,
    len: usize,
    _buf: std::marker::PhantomData<&'a Buf<T>>,
}

impl<T> Ptr<'_, T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A captured sequence of launches, replayed with [`Graph::launch`].
pub struct Graph {
    graph: CudaGraph,
}

// SAFETY: a graph exec may be launched from any thread as long as calls on
// it are serialized; `launch` takes `&self` and callers hold graphs behind
// a lock (the engine keeps them in its backend's mutex).
unsafe impl Send for Graph {}

impl Graph {
    pub fn launch(&self) -> Result<()> {
        self.graph.launch().map_err(KernelError::driver("cuGraphLaunch"))
    }
}

/// The step descriptor every step kernel reads from device memory (so a
/// captured graph replays for any step): `[rows, start position]`.
pub const STEP_WORDS: usize = 2;

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub q_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

/// Pointers to kernel argument values, in order, for [`Gpu::launch`].
macro_rules! kernel_args {
    ($($value:expr),* $(,)?) => {
        [$(($value) as *const _ as *mut c_void),*]
    };
}

/// One GPU, its stream and its kernels.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    arch: &'static str,
    sms: usize,
    /// Thread-block clusters (sm_90 and later): the wide products may split
    /// K among a cluster's blocks.
    clusters: bool,
    /// How many blocks of each wide product kernel run at once.
    wide_slots: WideSlots,
    /// Kernels are launched with programmatic stream serialization (each may
    /// start while the one ahead finishes; pdl.cuh): on sm_90 and later,
    /// unless `GRAFT_CUDA_PDL=0`.
    pdl: bool,
    products: ProductKernels,
    functions: HashMap<&'static str, CudaFunction>,
}

/// Which kernels run the products. Both give the same bits for a row
/// (matmul.cu), so the choice is only about speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductKernels {
    /// The wide kernel where [`prefers_wide`] says so (bf16 input rows only),
    /// the skinny one otherwise.
    Auto,
    /// The skinny kernel up to its widest bucket, SKINNY_MAX_ROWS (`GRAFT_CUDA_WIDE=0`).
    Skinny,
    /// The wide kernel for every bf16 input, at any width (the checks;
    /// `GRAFT_CUDA_WIDE=1`).
    Wide,
    /// The wide kernel for every bf16 input with K split this many ways
    /// (one of [`WIDE_SPLITS`]; above 1 only where the GPU has clusters,
    /// [`Gpu::has_clusters`]): the checks.
    WideSplit(usize),
}

/// The products' entry points (matmul.cu). Skinny: family, input form
/// (`_norm`: normalizes f32 rows itself, up to FUSED_NORM_MAX_ROWS rows),
/// tile count, `_preload` ([`skinny_preloads`]; the `_norm` kernels always
/// preload), `_pipe` or `_pipe_lean` ([`skinny_pipelining`]); wide: family,
/// tile count and `_s2` or `_s4` (K split among a cluster, [`WIDE_SPLITS`]).
const PRODUCT_KERNELS: [&str; 78] = [
    "skinny_t1",
    "skinny_t2",
    "skinny_t4",
    "skinny_t8",
    "skinny_t16",
    "skinny_swiglu_t1",
    "skinny_swiglu_t2",
    "skinny_swiglu_t4",
    "skinny_swiglu_t8",
    "skinny_swiglu_t16",
    "skinny_rope_t1",
    "skinny_rope_t2",
    "skinny_rope_t4",
    "skinny_rope_t8",
    "skinny_rope_t16",
    "skinny_norm_t1",
    "skinny_norm_t2",
    "skinny_swiglu_norm_t1",
    "skinny_swiglu_norm_t2",
    "skinny_rope_norm_t1",
    "skinny_rope_norm_t2",
    "skinny_t1_preload",
    "skinny_t2_preload",
    "skinny_swiglu_t1_preload",
    "skinny_swiglu_t2_preload",
    "skinny_rope_t1_preload",
    "skinny_rope_t2_preload",
    "skinny_t1_pipe",
    "skinny_t2_pipe",
    "skinny_t4_pipe",
    "skinny_t8_pipe",
    "skinny_t16_pipe",
    "skinny_swiglu_t1_pipe",
    "skinny_swiglu_t2_pipe",
    "skinny_swiglu_t4_pipe",
    "skinny_swiglu_t8_pipe",
    "skinny_swiglu_t16_pipe",
    "skinny_rope_t1_pipe",
    "skinny_rope_t2_pipe",
    "skinny_rope_t4_pipe",
    "skinny_rope_t8_pipe",
    "skinny_rope_t16_pipe",
    "skinny_t1_pipe_lean",
    "skinny_swiglu_t1_pipe_lean",
    "skinny_rope_t1_pipe_lean",
    "skinny_t1_preload_pipe",
    "skinny_t2_preload_pipe",
    "skinny_swiglu_t1_preload_pipe",
    "skinny_swiglu_t2_preload_pipe",
    "skinny_rope_t1_preload_pipe",
    "skinny_rope_t2_preload_pipe",
    "wide_store_t2",
    "wide_swiglu_t2",
    "wide_rope_t2",
    "wide_store_t4",
    "wide_swiglu_t4",
    "wide_rope_t4",
    "wide_store_t8",
    "wide_swiglu_t8",
    "wide_rope_t8",
    "wide_store_t2_s2",
    "wide_swiglu_t2_s2",
    "wide_rope_t2_s2",
    "wide_store_t4_s2",
    "wide_swiglu_t4_s2",
    "wide_rope_t4_s2",
    "wide_store_t8_s2",
    "wide_swiglu_t8_s2",
    "wide_rope_t8_s2",
    "wide_store_t2_s4",
    "wide_swiglu_t2_s4",
    "wide_rope_t2_s4",
    "wide_store_t4_s4",
    "wide_swiglu_t4_s4",
    "wide_rope_t4_s4",
    "wide_store_t8_s4",
    "wide_swiglu_t8_s4",
    "wide_rope_t8_s4",
];

/// Kernels of each module.
const KERNELS: [(&str, &[&str]); 7] = [
    ("embed", &["embed_gather"]),
    ("norm", &["rms_norm"]),
    ("rope", &["qkv_rope_append"]),
    ("attention", &ATTENTION_KERNELS),
    ("matmul", &PRODUCT_KERNELS),
    ("sample", &["argmax_rows"]),
    ("init", &["fill_uniform_bf16"]),
];

fn shape_err(kernel: &'static str, what: String) -> KernelError {
    KernelError::Shape { kernel, what }
}

/// `Err` unless `ptr` holds exactly `expected` values.
fn check_len<T>(kernel: &'static str, name: &str, ptr: &Ptr<'_, T>, expected: usize) -> Result<()> {
    if ptr.len != expected {
        return Err(shape_err(kernel, format!("`{name}` has {} values, expected {expected}", ptr.len)));
    }
    Ok(())
}

/// `Err` unless `cache` is a layer's (K, V) pair of whole 16-token blocks
/// of `entry` values a token.
fn check_cache(kernel: &'static str, cache: &(Ptr<'_, bf16>, Ptr<'_, bf16>), entry: usize) -> Result<()> {
    if cache.0.len != cache.1.len || !cache.0.len.is_multiple_of(entry * crate::BLOCK_TOKENS) {
        return Err(shape_err(kernel, format!("a cache of {} and {} values", cache.0.len, cache.1.len)));
    }
    Ok(())
}

/// The x operand of a skinny product.
#[derive(Clone, Copy)]
pub enum ProductInput<'a> {
    /// bf16 rows (rows, k).
    Rows(Ptr<'a, bf16>),
    /// f32 residual rows (rows, k), RMS-normalized with `weight` (k) as the
    /// product loads them (the rms_norm kernel's arithmetic); steps of at
    /// most [`FUSED_NORM_MAX_ROWS`] rows.
    Normed { x: Ptr<'a, f32>, weight: Ptr<'a, f32>, eps: f32 },
}

impl ProductInput<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Rows(x) => x.len,
            Self::Normed { x, .. } => x.len,
        }
    }

    /// The kernel's leading arguments (matmul.cu's `X_PARAMS`).
    fn args(&self) -> Vec<*mut c_void> {
        match self {
            Self::Rows(x) => kernel_args![&x.raw].to_vec(),
            Self::Normed { x, weight, eps } => kernel_args![&x.raw, &weight.raw, eps].to_vec(),
        }
    }
}

/// A product's shape and the kernel that runs it: `rows` tokens (a width
/// bucket) times a weight of `n` rows.
struct Product {
    rows: usize,
    n: usize,
    kernel: &'static str,
    config: LaunchConfig,
}

/// The skinny kernel of `family` for `tiles` tiles, with the input
/// normalized by the kernel when `normed` (those always preload and never
/// pipeline), with `loads` otherwise.
fn skinny_kernel(family: &'static str, normed: bool, tiles: usize, loads: SkinnyLoads) -> Option<&'static str> {
    let name = if normed {
        format!("{family}_norm_t{tiles}")
    } else {
        let preload = if loads.preload { "_preload" } else { "" };
        let pipe = match loads.pipelining {
            Pipelining::Off => "",
            Pipelining::Deep => "_pipe",
            Pipelining::Lean => "_pipe_lean",
        };
        format!("{family}_t{tiles}{preload}{pipe}")
    };
    PRODUCT_KERNELS.iter().copied().find(|&kernel| kernel == name)
}

/// The wide kernel of a skinny family for blocks of `tokens` tokens in
/// clusters of `split`.
fn wide_kernel(family: &'static str, tokens: usize, split: usize) -> Option<&'static str> {
    let wide = match family {
        "skinny" => "wide_store",
        "skinny_swiglu" => "wide_swiglu",
        "skinny_rope" => "wide_rope",
        _ => return None,
    };
    let suffix = if split == 1 { String::new() } else { format!("_s{split}") };
    let name = format!("{wide}_t{}{suffix}", tokens / MMA_TILE_ROWS);
    PRODUCT_KERNELS.iter().copied().find(|&kernel| kernel == name)
}

/// The (tokens, split) of a block of wide kernel `kernel` (`None` for
/// others).
fn wide_kernel_block(kernel: &str) -> Option<(usize, usize)> {
    let block = kernel.strip_prefix("wide_")?.rsplit_once("_t")?.1;
    let (tiles, split) = block.split_once("_s").unwrap_or((block, "1"));
    Some((tiles.parse::<usize>().ok()? * MMA_TILE_ROWS, split.parse().ok()?))
}

/// How many blocks of each wide kernel the GPU runs at once: each SM holds
/// as many as the driver's occupancy allows the tightest of its families
/// (registers, shared memory); split kernels only with `clusters`.
fn wide_slots(functions: &HashMap<&'static str, CudaFunction>, sms: usize, clusters: bool) -> Result<WideSlots> {
    let mut slots = WideSlots { sms, per_sm: Default::default() };
    for (t, &tokens) in WIDE_TOKENS.iter().enumerate() {
        for (s, &split) in WIDE_SPLITS.iter().enumerate() {
            if split > 1 && !clusters {
                continue;
            }
            let mut per_sm = usize::MAX;
            for family in ["skinny", "skinny_swiglu", "skinny_rope"] {
                let Some(kernel) = wide_kernel(family, tokens, split) else { continue };
                let Some(function) = functions.get(kernel) else { continue };
                let blocks = function
                    .occupancy_max_active_blocks_per_multiprocessor(
                        (MATMUL_WARPS * 32) as u32,
                        wide_shared_bytes(tokens, split),
                        None,
                    )
                    .map_err(KernelError::driver(format!("cuOccupancyMaxActiveBlocksPerMultiprocessor ({kernel})")))?;
                per_sm = per_sm.min(blocks as usize);
            }
            slots.per_sm[t][s] = if per_sm == usize::MAX { 0 } else { per_sm };
        }
    }
    Ok(slots)
}

fn int(kernel: &'static str, name: &str, value: usize) -> Result<i32> {
    i32::try_from(value).map_err(|_| shape_err(kernel, format!("`{name}` = {value} does not fit an int")))
}

fn grid(x: usize, y: usize, z: usize, threads: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (x as u32, y as u32, z as u32), block_dim: (threads as u32, 1, 1), shared_mem_bytes: 0 }
}

impl Gpu {
    /// Opens device `ordinal` and loads every kernel, compiling the modules
    /// not yet in `cache_dir`.
    pub fn new(ordinal: usize, cache_dir: &Path) -> Result<Self> {
        // SAFETY: these only try to open the shared libraries.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(KernelError::Unavailable { what: "the CUDA driver (libcuda)" });
        }
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(KernelError::Unavailable { what: "NVRTC (libnvrtc)" });
        }
        let ctx = CudaContext::new(ordinal).map_err(KernelError::driver(format!("cuCtxCreate (device {ordinal})")))?;
        // SAFETY: nothing has been allocated or launched yet; from here on
        // all work goes to one stream in order, so no event is needed.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability().map_err(KernelError::driver("cuDeviceGetAttribute"))?;
        let arch = arch_for(major, minor).ok_or(KernelError::UnsupportedDevice { ordinal, major, minor })?;
        let name = ctx.name().map_err(KernelError::driver("cuDeviceGetName"))?;
        let sms = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(KernelError::driver("cuDeviceGetAttribute"))? as usize;
        let stream = ctx.new_stream().map_err(KernelError::driver("cuStreamCreate"))?;
        let mut functions = HashMap::new();
        for module in &MODULES {
            let ptx = load_or_compile(cache_dir, module, arch)?;
            let loaded = ctx
                .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                .map_err(KernelError::driver(format!("cuModuleLoadData ({})", module.name)))?;
            let names = KERNELS.iter().find(|(m, _)| *m == module.name).map_or(&[][..], |(_, n)| *n);
            for &kernel in names {
                let function = loaded
                    .load_function(kernel)
                    .map_err(KernelError::driver(format!("cuModuleGetFunction ({kernel})")))?;
                let shared = ATTENTION_KERNELS
                    .iter()
                    .position(|&name| name == kernel)
                    .map(|i| attention_shared_bytes(ATTENTION_HEAD_DIMS[i]))
                    .or_else(|| wide_kernel_block(kernel).map(|(tokens, split)| wide_shared_bytes(tokens, split)));
                if let Some(bytes) = shared {
                    let bytes = bytes as i32;
                    function
                        .set_attribute(CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes)
                        .map_err(KernelError::driver(format!("cuFuncSetAttribute ({kernel}, {bytes} bytes)")))?;
                }
                functions.insert(kernel, function);
            }
        }
        let pdl = major >= 9 && std::env::var_os("GRAFT_CUDA_PDL").is_none_or(|v| v != "0");
        let products = match std::env::var("GRAFT_CUDA_WIDE").as_deref() {
            Ok("0") => ProductKernels::Skinny,
            Ok("1") => ProductKernels::Wide,
            _ => ProductKernels::Auto,
        };
        let clusters = major >= 9;
        let wide_slots = wide_slots(&functions, sms, clusters)?;
        Ok(Self { ctx, stream, name, arch, sms, clusters, wide_slots, pdl, products, functions })
    }

    /// The device's name, e.g. "NVIDIA H200".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The NVRTC target the kernels were built for.
    pub fn arch(&self) -> &'static str {
        self.arch
    }

    pub fn multiprocessors(&self) -> usize {
        self.sms
    }

    /// Whether the device runs thread-block clusters (sm_90 and later).
    pub fn has_clusters(&self) -> bool {
        self.clusters
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx.mem_get_info().map_err(KernelError::driver("cuMemGetInfo"))
    }

    fn function(&self, name: &'static str) -> &CudaFunction {
        // Every name used below is in KERNELS, all loaded by `new`.
        &self.functions[name]
    }

    /// Checks x (rows, k), w (n, k) and the step buffer of a product of
    /// `family` (`skinny`, `skinny_swiglu` or `skinny_rope`) and picks its
    /// kernel for the step's width, the input's form and the
    /// [`ProductKernels`] choice.
    fn product(
        &self,
        family: &'static str,
        input: &ProductInput<'_>,
        w: &Ptr<'_, bf16>,
        step: &Ptr<'_, u32>,
        k: usize,
    ) -> Result<Product> {
        let x_len = input.len();
        if k == 0 || !k.is_multiple_of(8) || !w.len.is_multiple_of(k) || !x_len.is_multiple_of(k) {
            return Err(shape_err(family, format!("k = {k} (a multiple of 8) with x of {x_len} and w of {}", w.len)));
        }
        check_len(family, "step", step, STEP_WORDS)?;
        let rows = x_len / k;
        let n = w.len / k;
        let bucket = bucket_for(rows)
            .filter(|&b| b == rows)
            .ok_or_else(|| shape_err(family, format!("{rows} rows is not a step width bucket {WIDTH_BUCKETS:?}")))?;
        let normed = match input {
            ProductInput::Rows(_) => "",
            ProductInput::Normed { weight, .. } => {
                check_len(family, "norm weight", weight, k)?;
                if k > FUSED_NORM_MAX_HIDDEN || bucket > FUSED_NORM_MAX_ROWS {
                    return Err(shape_err(family, format!("normalizing {rows} rows of {k} in the product")));
                }
                "_norm"
            }
        };
        let wide = normed.is_empty()
            && match self.products {
                ProductKernels::Auto => prefers_wide(bucket, n, self.sms),
                ProductKernels::Skinny => bucket > SKINNY_MAX_ROWS,
                ProductKernels::Wide | ProductKernels::WideSplit(_) => true,
            };
        let plan = match self.products {
            ProductKernels::WideSplit(split) => {
                if !WIDE_SPLITS.contains(&split) || (split > 1 && !self.clusters) {
                    let has = if self.clusters { "" } else { " (this GPU has no clusters)" };
                    return Err(shape_err(
                        family,
                        format!("K split {split} ways{has}; the kernels split {WIDE_SPLITS:?}"),
                    ));
                }
                WideGrid { split, ..wide_grid(bucket, n, k, &WideSlots::unsplit(self.sms)) }
            }
            _ => wide_grid(bucket, n, k, &self.wide_slots),
        };
        if let (true, Some(kernel)) = (wide, wide_kernel(family, plan.tokens, plan.split)) {
            let mut config = grid(plan.token_tiles, plan.row_tiles, plan.split, MATMUL_WARPS * 32);
            config.shared_mem_bytes = wide_shared_bytes(plan.tokens, plan.split) as u32;
            return Ok(Product { rows, n, kernel, config });
        }
        let (tiles, blocks) = (skinny_tiles(bucket), skinny_blocks(n));
        let loads = SkinnyLoads::choose(tiles, k, blocks, self.sms);
        let kernel = skinny_kernel(family, !normed.is_empty(), tiles, loads)
            .ok_or_else(|| shape_err(family, format!("no {family}{normed} kernel for {rows} rows")))?;
        let config = grid(blocks, 1, 1, MATMUL_WARPS * 32);
        Ok(Product { rows, n, kernel, config })
    }

    /// Which kernels run the products from now on (graphs captured before
    /// keep theirs).
    pub fn set_product_kernels(&mut self, products: ProductKernels) {
        self.products = products;
    }

    /// A zeroed buffer of `len` values.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<Buf<T>> {
        let slice = self
            .stream
            .alloc_zeros(len)
            .map_err(KernelError::driver(format!("cuMemAlloc ({} bytes)", len * std::mem::size_of::<T>())))?;
        Ok(Buf { slice })
    }

    /// A buffer holding a copy of `values`.
    pub fn upload<T: DeviceRepr>(&self, values: &[T]) -> Result<Buf<T>> {
        let slice = self.stream.clone_htod(values).map_err(KernelError::driver("cuMemcpyHtoD"))?;
        Ok(Buf { slice })
    }

    /// Copies `values` into `buf` from `offset`.
    pub fn write<T: DeviceRepr>(&self, buf: &mut Buf<T>, offset: usize, values: &[T]) -> Result<()> {
        let end = offset.checked_add(values.len()).filter(|&end| end <= buf.len()).ok_or_else(|| {
            shape_err("write", format!("{} values at {offset} overrun a buffer of {}", values.len(), buf.len()))
        })?;
        let mut dst = buf.slice.slice_mut(offset..end);
        self.stream.memcpy_htod(values, &mut dst).map_err(KernelError::driver("cuMemcpyHtoD"))
    }

    /// Reads `len` values of `buf` from `offset` (waits for the stream).
    pub fn read<T: DeviceRepr + Default + Clone>(&self, buf: &Buf<T>, offset: usize, len: usize) -> Result<Vec<T>> {
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= buf.len())
            .ok_or_else(|| shape_err("read", format!("{len} values at {offset} overrun a buffer of {}", buf.len())))?;
        let mut host = vec![T::default(); len];
        self.stream
            .memcpy_dtoh(&buf.slice.slice(offset..end), &mut host)
            .map_err(KernelError::driver("cuMemcpyDtoH"))?;
        Ok(host)
    }

    /// Copies `len` values inside `buf` from `from` to `to` (ranges must not
    /// overlap), on the stream. Takes `&Buf`: like a kernel launch, the copy
    /// writes device memory, never the handle.
    pub fn copy_within<T>(&self, buf: &Buf<T>, from: usize, to: usize, len: usize) -> Result<()> {
        let fits = |start: usize| start.checked_add(len).is_some_and(|end| end <= buf.len());
        if !fits(from) || !fits(to) || (from < to + len && to < from + len) {
            return Err(shape_err("copy_within", format!("{len} values {from} -> {to} in a buffer of {}", buf.len())));
        }
        let (base, _sync) = buf.slice.device_ptr(&self.stream);
        let size = std::mem::size_of::<T>();
        // SAFETY: both ranges are inside the allocation (checked above) and
        // disjoint; the copy is ordered on the stream like every kernel.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                base + (to * size) as u64,
                base + (from * size) as u64,
                len * size,
                self.stream.cu_stream(),
            )
        }
        .map_err(KernelError::driver("cuMemcpyDtoDAsync"))
    }

    /// Waits for all work on the stream.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(KernelError::driver("cuStreamSynchronize"))
    }

    /// Captures the launches `record` makes into a graph (nothing runs
    /// during capture).
    pub fn capture(&self, record: impl FnOnce(&Self) -> Result<()>) -> Result<Graph> {
        self.synchronize()?;
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .map_err(KernelError::driver("cuStreamBeginCapture"))?;
        let recorded = record(self);
        let ended = self.stream.end_capture(CUgraphInstantiate_flags(0));
        recorded?;
        let graph = ended
            .map_err(KernelError::driver("cuStreamEndCapture"))?
            .ok_or_else(|| shape_err("capture", "the captured graph is empty".into()))?;
        graph.upload().map_err(KernelError::driver("cuGraphUpload"))?;
        Ok(Graph { graph })
    }

    /// Runs `work` between two events and returns the device time in ms.
    pub fn time_ms<E: From<KernelError>>(&self, work: impl FnOnce(&Self) -> Result<(), E>) -> Result<f32, E> {
        let event =
            || self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(KernelError::driver("cuEventCreate"));
        let (start, end) = (event()?, event()?);
        start.record(&self.stream).map_err(KernelError::driver("cuEventRecord"))?;
        work(self)?;
        end.record(&self.stream).map_err(KernelError::driver("cuEventRecord"))?;
        end.synchronize().map_err(KernelError::driver("cuEventSynchronize"))?;
        Ok(start.elapsed_ms(&end).map_err(KernelError::driver("cuEventElapsedTime"))?)
    }

    /// Whether kernels are launched with programmatic dependent launch.
    pub fn programmatic_launch(&self) -> bool {
        self.pdl
    }

    /// Launches `kernel` on the stream with `args` (pointers to each
    /// argument's value, in the kernel's order), allowing programmatic
    /// dependent launch where enabled.
    ///
    /// # Safety
    /// `args` must match the kernel's parameter list in number, order and
    /// types, and every buffer the kernel touches under `config` must be
    /// large enough (the callers check the lengths).
    unsafe fn launch(&self, kernel: &'static str, config: LaunchConfig, args: &mut [*mut c_void]) -> Result<()> {
        let err = KernelError::driver(format!("cuLaunchKernelEx ({kernel})"));
        self.ctx.bind_to_thread().map_err(KernelError::driver("cuCtxSetCurrent"))?;
        let mut attrs = [CUlaunchAttribute {
            id: CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
            pad: [0; 4],
            value: CUlaunchAttributeValue { programmaticStreamSerializationAllowed: 1 },
        }];
        let (grid, block) = (config.grid_dim, config.block_dim);
        let launch = CUlaunchConfig {
            gridDimX: grid.0,
            gridDimY: grid.1,
            gridDimZ: grid.2,
            blockDimX: block.0,
            blockDimY: block.1,
            blockDimZ: block.2,
            sharedMemBytes: config.shared_mem_bytes,
            hStream: self.stream.cu_stream(),
            attrs: attrs.as_mut_ptr(),
            numAttrs: u32::from(self.pdl),
        };
        // SAFETY: the caller guarantees `args` matches the kernel; the
        // function belongs to this context, bound above.
        unsafe { cuLaunchKernelEx(&launch, self.function(kernel).cu_function(), args.as_mut_ptr(), null_mut()) }
            .result()
            .map_err(err)
    }

    /// `x[t] = table[tokens[t]]` as f32 for each of the `rows` rows (rows past
    /// the step's count, and ids outside the table, give zeros).
    pub fn embed(&self, table: Ptr<bf16>, step: Ptr<u32>, tokens: Ptr<u32>, x: Ptr<f32>, hidden: usize) -> Result<()> {
        const K: &str = "embed_gather";
        let rows = tokens.len;
        check_len(K, "step", &step, STEP_WORDS)?;
        check_len(K, "x", &x, rows * hidden)?;
        if hidden == 0 || !table.len.is_multiple_of(hidden) {
            return Err(shape_err(K, format!("table of {} values is not rows of {hidden}", table.len)));
        }
        let (h, vocab) = (int(K, "hidden", hidden)?, int(K, "vocab", table.len / hidden)?);
        let mut args = kernel_args![&table.raw, &step.raw, &tokens.raw, &x.raw, &h, &vocab];
        // SAFETY: the argument list matches embed.cu's signature; every
        // buffer's length was checked against the grid above.
        unsafe { self.launch(K, grid(rows, 1, 1, ROW_THREADS), &mut args) }
    }

    /// `out = rms_norm(x) * weight` row by row, to bf16.
    pub fn rms_norm(&self, x: Ptr<f32>, weight: Ptr<f32>, out: Ptr<bf16>, eps: f32) -> Result<()> {
        const K: &str = "rms_norm";
        let hidden = weight.len;
        if hidden == 0 || !x.len.is_multiple_of(hidden) {
            return Err(shape_err(K, format!("x of {} values is not rows of {hidden}", x.len)));
        }
        check_len(K, "out", &out, x.len)?;
        let h = int(K, "hidden", hidden)?;
        let mut args = kernel_args![&x.raw, &weight.raw, &out.raw, &h, &eps];
        // SAFETY: matches norm.cu's signature; lengths checked above.
        unsafe { self.launch(K, grid(x.len / hidden, 1, 1, ROW_THREADS), &mut args) }
    }

    /// Bias, q/k norm and RoPE over the fused QKV rows; q to `q_out`, k and
    /// v into one layer's paged cache at the step's positions.
    #[allow(clippy::too_many_arguments)]
    pub fn qkv_rope_append(
        &self,
        qkv: Ptr<f32>,
        bias: Option<Ptr<f32>>,
        qk_norm: Option<(Ptr<f32>, Ptr<f32>)>,
        inv_freq: Ptr<f32>,
        step: Ptr<u32>,
        table: Ptr<u32>,
        q_out: Ptr<f32>,
        cache: (Ptr<bf16>, Ptr<bf16>),
        shape: AttentionShape,
        eps: f32,
    ) -> Result<()> {
        const K: &str = "qkv_rope_append";
        let AttentionShape { q_heads: hq, kv_heads: hk, head_dim: d } = shape;
        if d == 0 || d % 2 != 0 || d > MAX_HEAD_DIM || hk == 0 || hq % hk != 0 {
            return Err(shape_err(K, format!("{hq} q heads, {hk} kv heads of dim {d}")));
        }
        let width = (hq + 2 * hk) * d;
        if !qkv.len.is_multiple_of(width) {
            return Err(shape_err(K, format!("qkv of {} values is not rows of {width}", qkv.len)));
        }
        let rows = qkv.len / width;
        check_len(K, "step", &step, STEP_WORDS)?;
        check_len(K, "inv_freq", &inv_freq, d / 2)?;
        check_len(K, "q_out", &q_out, rows * hq * d)?;
        if let Some(bias) = &bias {
            check_len(K, "bias", bias, width)?;
        }
        if let Some((qn, kn)) = &qk_norm {
            check_len(K, "q_norm", qn, d)?;
            check_len(K, "k_norm", kn, d)?;
        }
        check_cache(K, &cache, hk * d)?;
        let (bias_raw, (qn_raw, kn_raw)) = (bias.map_or(0, |p| p.raw), qk_norm.map_or((0, 0), |(q, k)| (q.raw, k.raw)));
        let (hq_i, hk_i, d_i) = (int(K, "hq", hq)?, int(K, "hk", hk)?, int(K, "d", d)?);
        let mut args = kernel_args![
            &qkv.raw,
            &bias_raw,
            &qn_raw,
            &kn_raw,
            &inv_freq.raw,
            &step.raw,
            &table.raw,
            &q_out.raw,
            &cache.0.raw,
            &cache.1.raw,
            &hq_i,
            &hk_i,
            &d_i,
            &eps
        ];
        // SAFETY: matches rope.cu's signature; lengths checked above. The
        // host guarantees every position of the step has a block in `table`
        // whose id is below the cache's block count (KvCache::reserve).
        unsafe { self.launch(K, grid(rows, hq + 2 * hk, 1, d / 2), &mut args) }
    }

    /// Attention of the step's rows over the paged cache into `out` (bf16,
    /// (rows, hq*d)); `partial` is scratch of (rows, hq, splits, d + 2) and
    /// `counters` (rows * hq) must be zero (the kernel leaves them zero).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        q: Ptr<f32>,
        cache: (Ptr<bf16>, Ptr<bf16>),
        step: Ptr<u32>,
        table: Ptr<u32>,
        partial: Ptr<f32>,
        counters: Ptr<u32>,
        out: Ptr<bf16>,
        shape: AttentionShape,
    ) -> Result<()> {
        const K: &str = "attention";
        let AttentionShape { q_heads: hq, kv_heads: hk, head_dim: d } = shape;
        if hk == 0 || hq % hk != 0 {
            return Err(shape_err(K, format!("{hq} q heads, {hk} kv heads of dim {d}")));
        }
        let Some(kernel) = attention_kernel(d) else {
            return Err(shape_err(K, format!("head_dim {d} (compiled for {ATTENTION_HEAD_DIMS:?})")));
        };
        if !q.len.is_multiple_of(hq * d) {
            return Err(shape_err(K, format!("q of {} values is not rows of {}", q.len, hq * d)));
        }
        let rows = q.len / (hq * d);
        check_len(K, "step", &step, STEP_WORDS)?;
        check_len(K, "partial", &partial, rows * hq * ATTENTION_SPLITS * (d + 2))?;
        check_len(K, "counters", &counters, rows * hq)?;
        check_len(K, "out", &out, rows * hq * d)?;
        check_cache(K, &cache, hk * d)?;
        let (units, tiles) = (attention_tile_units(rows, hq / hk), attention_unit_tiles(rows, hq / hk));
        let (hq_i, hk_i, units_i, splits_i) =
            (int(K, "hq", hq)?, int(K, "hk", hk)?, int(K, "units", units)?, int(K, "splits", ATTENTION_SPLITS)?);
        let scale = 1.0 / (d as f32).sqrt();
        let mut args = kernel_args![
            &q.raw,
            &cache.0.raw,
            &cache.1.raw,
            &step.raw,
            &table.raw,
            &partial.raw,
            &counters.raw,
            &out.raw,
            &hq_i,
            &hk_i,
            &units_i,
            &splits_i,
            &scale
        ];
        let mut config = grid(hk, tiles, attention_kv_blocks(rows), ATTENTION_WARPS * 32);
        config.shared_mem_bytes = attention_shared_bytes(d) as u32;
        // SAFETY: matches attention.cu's signature; lengths checked above
        // (the counters of `tiles` unit tiles of hk KV heads fit rows * hq);
        // the block table covers every visible position (KvCache::reserve).
        unsafe { self.launch(kernel, config, &mut args) }
    }

    /// `y (+)= x @ w^T` for the step's rows: x (rows, k), w (n, k) bf16,
    /// y (rows, n) f32; `accumulate` adds into y (the residual).
    pub fn matmul(
        &self,
        x: ProductInput,
        w: Ptr<bf16>,
        y: Ptr<f32>,
        step: Ptr<u32>,
        k: usize,
        accumulate: bool,
    ) -> Result<()> {
        const K: &str = "skinny";
        let product = self.product(K, &x, &w, &step, k)?;
        let (rows, n) = (product.rows, product.n);
        check_len(K, "y", &y, rows * n)?;
        let (n_i, k_i, acc) = (int(K, "n", n)?, int(K, "k", k)?, i32::from(accumulate));
        let mut args = x.args();
        args.extend(kernel_args![&w.raw, &y.raw, &step.raw, &n_i, &k_i, &acc]);
        // SAFETY: matches matmul.cu's signature; x holds the bucket's rows,
        // lengths checked above.
        unsafe { self.launch(product.kernel, product.config, &mut args) }
    }

    /// `out = silu(gate) * up` of `x @ w^T` for the step's rows, where `w`
    /// is the fused gate/up weight in [`crate::geometry::swiglu_row_order`]
    /// (2 inter rows of k); out (rows, inter) bf16.
    pub fn matmul_swiglu(&self, x: ProductInput, w: Ptr<bf16>, out: Ptr<bf16>, step: Ptr<u32>, k: usize) -> Result<()> {
        const K: &str = "skinny_swiglu";
        let product = self.product(K, &x, &w, &step, k)?;
        let (rows, n) = (product.rows, product.n);
        if !n.is_multiple_of(16) {
            return Err(shape_err(K, format!("{n} gate/up rows (a multiple of 16)")));
        }
        check_len(K, "out", &out, rows * n / 2)?;
        let (n_i, k_i) = (int(K, "n", n)?, int(K, "k", k)?);
        let mut args = x.args();
        args.extend(kernel_args![&w.raw, &out.raw, &step.raw, &n_i, &k_i]);
        // SAFETY: matches matmul.cu's signature; lengths checked above.
        unsafe { self.launch(product.kernel, product.config, &mut args) }
    }

    /// The QKV product of the step's rows with bias and RoPE in its
    /// epilogue: q to `q_out` (f32), k and v into one layer's paged cache.
    /// `w` is the fused QKV weight in [`crate::geometry::rope_row_order`];
    /// the bias, if any, is in the original row order.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul_qkv_rope(
        &self,
        x: ProductInput,
        w: Ptr<bf16>,
        step: Ptr<u32>,
        table: Ptr<u32>,
        k: usize,
        bias: Option<Ptr<f32>>,
        inv_freq: Ptr<f32>,
        q_out: Ptr<f32>,
        cache: (Ptr<bf16>, Ptr<bf16>),
        shape: AttentionShape,
    ) -> Result<()> {
        const K: &str = "skinny_rope";
        let AttentionShape { q_heads: hq, kv_heads: hk, head_dim: d } = shape;
        if d == 0 || !d.is_multiple_of(16) || d > MAX_HEAD_DIM || hk == 0 || hq % hk != 0 {
            return Err(shape_err(K, format!("{hq} q heads, {hk} kv heads of dim {d} (a multiple of 16)")));
        }
        let product = self.product(K, &x, &w, &step, k)?;
        let (rows, n) = (product.rows, product.n);
        if n != (hq + 2 * hk) * d {
            return Err(shape_err(K, format!("{n} weight rows for {hq} + 2 x {hk} heads of {d}")));
        }
        check_len(K, "inv_freq", &inv_freq, d / 2)?;
        check_len(K, "q_out", &q_out, rows * hq * d)?;
        if let Some(bias) = &bias {
            check_len(K, "bias", bias, n)?;
        }
        check_cache(K, &cache, hk * d)?;
        let bias_raw = bias.map_or(0, |p| p.raw);
        let (n_i, k_i) = (int(K, "n", n)?, int(K, "k", k)?);
        let (hq_i, hk_i, d_i) = (int(K, "hq", hq)?, int(K, "hk", hk)?, int(K, "d", d)?);
        let mut args = x.args();
        args.extend(kernel_args![
            &w.raw,
            &step.raw,
            &n_i,
            &k_i,
            &bias_raw,
            &inv_freq.raw,
            &table.raw,
            &q_out.raw,
            &cache.0.raw,
            &cache.1.raw,
            &hq_i,
            &hk_i,
            &d_i
        ]);
        // SAFETY: matches matmul.cu's signature; lengths checked above. The
        // host guarantees every position of the step has a block in `table`
        // whose id is below the cache's block count (KvCache::reserve).
        unsafe { self.launch(product.kernel, product.config, &mut args) }
    }

    /// The argmax of each of the step's logit rows into `out`.
    pub fn argmax(&self, logits: Ptr<f32>, step: Ptr<u32>, out: Ptr<u32>) -> Result<()> {
        const K: &str = "argmax_rows";
        let rows = out.len;
        if rows == 0 || !logits.len.is_multiple_of(rows) {
            return Err(shape_err(K, format!("logits of {} values for {rows} rows", logits.len)));
        }
        check_len(K, "step", &step, STEP_WORDS)?;
        let vocab = int(K, "vocab", logits.len / rows)?;
        let mut args = kernel_args![&logits.raw, &step.raw, &out.raw, &vocab];
        // SAFETY: matches sample.cu's signature; lengths checked above.
        unsafe { self.launch(K, grid(rows, 1, 1, ARGMAX_THREADS), &mut args) }
    }

    /// Fills `out` with uniform values in [-scale, scale) from `seed`.
    pub fn fill_uniform(&self, out: Ptr<bf16>, seed: u64, scale: f32) -> Result<()> {
        const K: &str = "fill_uniform_bf16";
        let n = out.len as u64;
        let blocks = elementwise_blocks(out.len, ROW_THREADS, self.sms);
        let mut args = kernel_args![&out.raw, &n, &seed, &scale];
        // SAFETY: matches init.cu's signature; writes `n` values of `out`.
        unsafe { self.launch(K, grid(blocks, 1, 1, ROW_THREADS), &mut args) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module compiles through NVRTC (`load_or_compile`, the path a
    /// GPU takes) for Ampere and Hopper, and its PTX defines every kernel
    /// the launcher looks up there. Needs NVRTC and CUDA's headers, no GPU:
    /// scripts/test.sh installs both from PyPI (`.cache/nvrtc`).
    #[test]
    fn every_module_compiles_and_defines_its_kernels() {
        // SAFETY: only tries to open the library.
        let found = unsafe { cudarc::nvrtc::sys::is_culib_present() };
        assert!(found, "NVRTC not found: scripts/test.sh installs it into .cache/nvrtc and sets LD_LIBRARY_PATH");
        let dir = tempfile::tempdir().expect("temp dir");
        for arch in ["sm_80", "sm_90a"] {
            for module in &MODULES {
                let ptx = match load_or_compile(dir.path(), module, arch) {
                    Ok(ptx) => ptx,
                    Err(err) => panic!("{err}"),
                };
                let (_, kernels) = KERNELS.iter().find(|(name, _)| *name == module.name).expect("listed");
                for kernel in *kernels {
                    assert!(ptx.contains(&format!(".entry {kernel}(")), "{} ({arch}) lacks {kernel}", module.name);
                }
            }
        }
        let listed: Vec<&str> = KERNELS.iter().map(|(name, _)| *name).collect();
        assert_eq!(listed, MODULES.iter().map(|m| m.name).collect::<Vec<_>>(), "every module has its kernels listed");
    }

    #[test]
    fn every_skinny_step_has_a_kernel() {
        for family in ["skinny", "skinny_swiglu", "skinny_rope"] {
            for bucket in WIDTH_BUCKETS.into_iter().filter(|&b| b <= SKINNY_MAX_ROWS) {
                let tiles = skinny_tiles(bucket);
                for (k, blocks) in [(576, 36), (1536, 36), (3584, 2368), (18944, 224), (576, 3072)] {
                    let loads = SkinnyLoads::choose(tiles, k, blocks, 132);
                    let kernel = skinny_kernel(family, false, tiles, loads).expect("compiled");
                    assert_eq!(kernel.contains("_preload"), loads.preload, "{kernel}");
                    assert_eq!(kernel.ends_with("_pipe"), loads.pipelining == Pipelining::Deep, "{kernel}");
                    assert_eq!(kernel.ends_with("_pipe_lean"), loads.pipelining == Pipelining::Lean, "{kernel}");
                }
                if bucket <= FUSED_NORM_MAX_ROWS {
                    let loads = SkinnyLoads::choose(tiles, FUSED_NORM_MAX_HIDDEN, usize::MAX, 132);
                    assert_eq!(loads.pipelining, Pipelining::Off, "the _norm kernels never pipeline");
                    assert!(skinny_kernel(family, true, tiles, loads).is_some(), "{family}_norm");
                }
            }
        }
    }

    #[test]
    fn every_wide_block_size_has_a_kernel_of_each_family() {
        for (tokens, split) in WIDE_TOKENS.into_iter().flat_map(|t| WIDE_SPLITS.map(|s| (t, s))) {
            for family in ["skinny", "skinny_swiglu", "skinny_rope"] {
                let kernel = wide_kernel(family, tokens, split).expect("compiled");
                assert_eq!(wide_kernel_block(kernel), Some((tokens, split)), "{kernel}");
            }
        }
        assert_eq!(wide_kernel("skinny", 64, 1), Some("wide_store_t8"));
        assert_eq!(wide_kernel("skinny_rope", 16, 4), Some("wide_rope_t2_s4"));
        assert_eq!(wide_kernel("skinny_norm", 64, 1), None);
        assert_eq!(wide_kernel_block("skinny_t4"), None);
    }
}
