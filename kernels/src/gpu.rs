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

use cudarc::driver::sys::{CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaGraph, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
    ValidAsZeroBits,
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

/// One GPU, its stream and its kernels.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    arch: &'static str,
    sms: usize,
    functions: HashMap<&'static str, CudaFunction>,
}

/// Kernels of each module.
const KERNELS: [(&str, &[&str]); 8] = [
    ("embed", &["embed_gather"]),
    ("norm", &["rms_norm"]),
    ("rope", &["qkv_rope_append"]),
    ("attention", &["attention_partial", "attention_combine"]),
    ("act", &["swiglu"]),
    ("matmul", &["skinny_t1", "skinny_t2", "skinny_t4", "skinny_t8", "skinny_t16"]),
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
                functions.insert(kernel, function);
            }
        }
        Ok(Self { ctx, stream, name, arch, sms, functions })
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

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize)> {
        self.ctx.mem_get_info().map_err(KernelError::driver("cuMemGetInfo"))
    }

    fn function(&self, name: &'static str) -> &CudaFunction {
        // Every name used below is in KERNELS, all loaded by `new`.
        &self.functions[name]
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

    fn launched(
        &self,
        kernel: &'static str,
        result: std::result::Result<(), cudarc::driver::DriverError>,
    ) -> Result<()> {
        result.map_err(KernelError::driver(format!("cuLaunchKernel ({kernel})")))
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
        let f = self.function(K);
        let mut b = self.stream.launch_builder(f);
        b.arg(&table.raw).arg(&step.raw).arg(&tokens.raw).arg(&x.raw).arg(&h).arg(&vocab);
        // SAFETY: the argument list matches embed.cu's signature; every
        // buffer's length was checked against the grid above.
        self.launched(K, unsafe { b.launch(grid(rows, 1, 1, ROW_THREADS)) }.map(drop))
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
        let f = self.function(K);
        let mut b = self.stream.launch_builder(f);
        b.arg(&x.raw).arg(&weight.raw).arg(&out.raw).arg(&h).arg(&eps);
        // SAFETY: matches norm.cu's signature; lengths checked above.
        self.launched(K, unsafe { b.launch(grid(x.len / hidden, 1, 1, ROW_THREADS)) }.map(drop))
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
        if cache.0.len != cache.1.len || !cache.0.len.is_multiple_of(hk * d * crate::BLOCK_TOKENS) {
            return Err(shape_err(K, format!("a cache of {} values", cache.0.len)));
        }
        let (bias_raw, (qn_raw, kn_raw)) = (bias.map_or(0, |p| p.raw), qk_norm.map_or((0, 0), |(q, k)| (q.raw, k.raw)));
        let (hq_i, hk_i, d_i) = (int(K, "hq", hq)?, int(K, "hk", hk)?, int(K, "d", d)?);
        let f = self.function(K);
        let mut b = self.stream.launch_builder(f);
        b.arg(&qkv.raw).arg(&bias_raw).arg(&qn_raw).arg(&kn_raw).arg(&inv_freq.raw).arg(&step.raw).arg(&table.raw);
        b.arg(&q_out.raw).arg(&cache.0.raw).arg(&cache.1.raw).arg(&hq_i).arg(&hk_i).arg(&d_i).arg(&eps);
        // SAFETY: matches rope.cu's signature; lengths checked above. The
        // host guarantees every position of the step has a block in `table`
        // whose id is below the cache's block count (KvCache::reserve).
        self.launched(K, unsafe { b.launch(grid(rows, hq + 2 * hk, 1, d / 2)) }.map(drop))
    }

    /// Attention of the step's rows over the paged cache into `out` (bf16,
    /// (rows, hq*d)); `partial` is scratch of (rows, hq, splits, d + 2).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        q: Ptr<f32>,
        cache: (Ptr<bf16>, Ptr<bf16>),
        step: Ptr<u32>,
        table: Ptr<u32>,
        partial: Ptr<f32>,
        out: Ptr<bf16>,
        shape: AttentionShape,
    ) -> Result<()> {
        const K: &str = "attention_partial";
        let AttentionShape { q_heads: hq, kv_heads: hk, head_dim: d } = shape;
        if d == 0 || !d.is_multiple_of(8) || d > MAX_HEAD_DIM || hk == 0 || hq % hk != 0 {
            return Err(shape_err(K, format!("{hq} q heads, {hk} kv heads of dim {d}")));
        }
        if !q.len.is_multiple_of(hq * d) {
            return Err(shape_err(K, format!("q of {} values is not rows of {}", q.len, hq * d)));
        }
        let rows = q.len / (hq * d);
        check_len(K, "step", &step, STEP_WORDS)?;
        check_len(K, "partial", &partial, rows * hq * ATTENTION_SPLITS * (d + 2))?;
        check_len(K, "out", &out, rows * hq * d)?;
        if cache.0.len != cache.1.len || !cache.0.len.is_multiple_of(hk * d * crate::BLOCK_TOKENS) {
            return Err(shape_err(K, format!("a cache of {} values", cache.0.len)));
        }
        let (hq_i, hk_i, d_i) = (int(K, "hq", hq)?, int(K, "hk", hk)?, int(K, "d", d)?);
        let scale = 1.0 / (d as f32).sqrt();
        let f = self.function(K);
        let mut b = self.stream.launch_builder(f);
        b.arg(&q.raw).arg(&cache.0.raw).arg(&cache.1.raw).arg(&step.raw).arg(&table.raw).arg(&partial.raw);
        b.arg(&hq_i).arg(&hk_i).arg(&d_i).arg(&scale);
        // SAFETY: matches attention.cu's signature; lengths checked above;
        // the block table covers every visible position (KvCache::reserve).
        self.launched(K, unsafe { b.launch(grid(hq, rows, ATTENTION_SPLITS, ATTENTION_THREADS)) }.map(drop))?;
        const C: &str = "attention_combine";
        let splits = ATTENTION_SPLITS as i32;
        let f = self.function(C);
        let mut b = self.stream.launch_builder(f);
        b.arg(&partial.raw).arg(&step.raw).arg(&out.raw).arg(&hq_i).arg(&d_i).arg(&splits);
        // SAFETY: as above.
        self.launched(C, unsafe { b.launch(grid(hq, rows, 1, d)) }.map(drop))
    }

    /// `out = silu(gate) * up` over the fused (rows, 2*inter) product.
    pub fn swiglu(&self, gate_up: Ptr<f32>, out: Ptr<bf16>, inter: usize) -> Result<()> {
        const K: &str = "swiglu";
        if inter == 0 || !out.len.is_multiple_of(inter) || gate_up.len != 2 * out.len {
            return Err(shape_err(
                K,
                format!("gate_up of {} values, out of {} for inter {inter}", gate_up.len, out.len),
            ));
        }
        let (rows, inter) = (int(K, "rows", out.len / inter)?, int(K, "inter", inter)?);
        let blocks = elementwise_blocks(out.len, ROW_THREADS, self.sms);
        let f = self.function(K);
        let mut b = self.stream.launch_builder(f);
        b.arg(&gate_up.raw).arg(&out.raw).arg(&rows).arg(&inter);
        // SAFETY: matches act.cu's signature; lengths checked above.
        self.launched(K, unsafe { b.launch(grid(blocks, 1, 1, ROW_THREADS)) }.map(drop))
    }

    /// `y (+)= x @ w^T` for the step's rows: x (rows, k) bf16, w (n, k)
    /// bf16, y (rows, n) f32; `accumulate` adds into y (the residual).
    pub fn matmul(
        &self,
        x: Ptr<bf16>,
        w: Ptr<bf16>,
        y: Ptr<f32>,
        step: Ptr<u32>,
        k: usize,
        accumulate: bool,
    ) -> Result<()> {
        const K: &str = "skinny";
        if k == 0 || !k.is_multiple_of(8) || !w.len.is_multiple_of(k) || !x.len.is_multiple_of(k) {
            return Err(shape_err(K, format!("k = {k} (a multiple of 8) with x of {} and w of {}", x.len, w.len)));
        }
        let (rows, n) = (x.len / k, w.len / k);
        check_len(K, "y", &y, rows * n)?;
        check_len(K, "step", &step, STEP_WORDS)?;
        let bucket = bucket_for(rows)
            .filter(|&b| b == rows)
            .ok_or_else(|| shape_err(K, format!("{rows} rows is not a step width bucket {WIDTH_BUCKETS:?}")))?;
        let name = match skinny_tiles(bucket) {
            1 => "skinny_t1",
            2 => "skinny_t2",
            4 => "skinny_t4",
            8 => "skinny_t8",
            _ => "skinny_t16",
        };
        let (n_i, k_i, acc) = (int(K, "n", n)?, int(K, "k", k)?, i32::from(accumulate));
        let f = self.function(name);
        let mut b = self.stream.launch_builder(f);
        b.arg(&x.raw).arg(&w.raw).arg(&y.raw).arg(&step.raw).arg(&n_i).arg(&k_i).arg(&acc);
        // SAFETY: matches matmul.cu's signature; x holds tiles * 8 rows
        // (the bucket), lengths checked above.
        self.launched(K, unsafe { b.launch(grid(skinny_blocks(n), 1, 1, MATMUL_WARPS * 32)) }.map(drop))
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
        let f = self.function(K);
        let mut b = self.stream.launch_builder(f);
        b.arg(&logits.raw).arg(&step.raw).arg(&out.raw).arg(&vocab);
        // SAFETY: matches sample.cu's signature; lengths checked above.
        self.launched(K, unsafe { b.launch(grid(rows, 1, 1, ARGMAX_THREADS)) }.map(drop))
    }

    /// Fills `out` with uniform values in [-scale, scale) from `seed`.
    pub fn fill_uniform(&self, out: Ptr<bf16>, seed: u64, scale: f32) -> Result<()> {
        const K: &str = "fill_uniform_bf16";
        let n = out.len as u64;
        let blocks = elementwise_blocks(out.len, ROW_THREADS, self.sms);
        let f = self.function(K);
        let mut b = self.stream.launch_builder(f);
        b.arg(&out.raw).arg(&n).arg(&seed).arg(&scale);
        // SAFETY: matches init.cu's signature; writes `n` values of `out`.
        self.launched(K, unsafe { b.launch(grid(blocks, 1, 1, ROW_THREADS)) }.map(drop))
    }
}
