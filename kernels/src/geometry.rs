//! Launch geometry and the limits the kernels are written for: pure
//! functions, so they are tested on machines without a GPU.

/// Most rows (tokens) one step runs; longer inputs (prompts, long drafts)
/// are split into steps. A step's fixed cost (the chains of its ~200
/// kernels) is paid once a step: on the H200, SmolLM2 runs 512 rows in
/// 3.51 ms against 2 x 2.14 for two steps of 256, and the apply cases'
/// prefill p50 went 9.21 -> 7.50 ms; 1,024 rows took 7.31 ms, more than
/// two steps of 512, for a prefill p50 of 7.26 and twice the scratch
/// memory (bench/results/2026-11-29-h200-steps512).
pub const MAX_STEP_ROWS: usize = 512;

/// Step widths the kernels (and CUDA graphs) are built for: a step of `n`
/// rows runs at the smallest bucket that holds it, rows past `n` masked.
pub const WIDTH_BUCKETS: [usize; 7] = [8, 16, 32, 64, 128, 256, 512];

/// Widest bucket the skinny product is compiled for (16 tiles of 8 rows);
/// wider steps always run the wide product.
pub const SKINNY_MAX_ROWS: usize = 128;

/// Tokens per tensor-core tile of the skinny product (the MMA's N).
pub const MMA_TILE_ROWS: usize = 8;

/// Weight rows one block of the skinny product computes (the MMA's M).
pub const MMA_WEIGHT_ROWS: usize = 16;

/// Warps per block of the skinny product; they split the K dimension.
pub const MATMUL_WARPS: usize = 8;

/// Splits of the KV length in attention. Fixed for every width, so a row's
/// attention result never depends on how many rows share its step.
pub const ATTENTION_SPLITS: usize = 32;

/// Most splits the attention kernel merges: its merge gives each split a
/// lane (attention.cu's MAX_SPLITS).
pub const ATTENTION_MAX_SPLITS: usize = 32;
const _: () = assert!(ATTENTION_SPLITS <= ATTENTION_MAX_SPLITS);

/// KV positions an attention block stages in shared memory at a time
/// (attention.cu's CHUNK).
pub const ATTENTION_CHUNK: usize = 64;

/// Warps of an attention block (attention.cu's WARPS).
pub const ATTENTION_WARPS: usize = 4;

/// (row, query head) units of an attention block: the rows of one MMA tile,
/// whose work the block's warps share (attention.cu's UNITS).
pub const ATTENTION_BLOCK_UNITS: usize = 16;

/// bf16 values of padding after each K or V row an attention block stages
/// (attention.cu's PAD), so the rows an MMA fragment reads fall in
/// different shared-memory banks.
pub const ATTENTION_PAD: usize = 8;

/// The head dimensions the attention kernel is compiled for, each its own
/// kernel (the dimension sizes its MMA fragments and loops at compile time),
/// named in [`ATTENTION_KERNELS`].
pub const ATTENTION_HEAD_DIMS: [usize; 4] = [16, 32, 64, 128];

/// The attention kernels of [`ATTENTION_HEAD_DIMS`], in that order
/// (attention.cu's `ATTENTION(D)` entry points).
pub const ATTENTION_KERNELS: [&str; 4] = ["attention_d16", "attention_d32", "attention_d64", "attention_d128"];

/// The attention kernel for heads of `head_dim`, if it is compiled for it.
pub fn attention_kernel(head_dim: usize) -> Option<&'static str> {
    ATTENTION_HEAD_DIMS.iter().position(|&d| d == head_dim).map(|i| ATTENTION_KERNELS[i])
}

/// Blocks along the KV length for each (KV head, unit tile) of an attention
/// step at width `bucket`: one a split up to 16 rows; in wider steps, whose
/// unit tiles fill more of the GPU, a block walks several splits, since
/// blocks with no chunk to attend still cost their launch, and fewer
/// blocks leave fewer partials to merge. Chosen on the H200 for the
/// tensor-core kernel (bench/results/2026-11-29-h200-merge): SmolLM2 at 32
/// rows took 1.252 ms a step with 16 blocks against 1.289 with 32 (2,048
/// tokens of context; 1.035 against 1.050 at 512), at 64 rows 1.501 with
/// 8 against 1.527 with 16; 16 blocks at 8 rows and below made the
/// one-token step 8% slower at 2,048.
pub fn attention_kv_blocks(bucket: usize) -> usize {
    match bucket {
        0..=16 => ATTENTION_SPLITS,
        17..=32 => ATTENTION_SPLITS / 2,
        _ => ATTENTION_SPLITS / 4,
    }
}

/// Largest head dimension the RoPE and q/k-norm kernels take (attention
/// takes [`ATTENTION_HEAD_DIMS`]).
pub const MAX_HEAD_DIM: usize = 256;

/// Threads per block of row-wise kernels (norms, gathers, argmax).
pub const ROW_THREADS: usize = 256;

/// Threads of the argmax block (its shared arrays are sized for this).
pub const ARGMAX_THREADS: usize = 1024;

/// The bucket a step of `rows` rows runs at, `None` past [`MAX_STEP_ROWS`]
/// or for zero rows.
pub fn bucket_for(rows: usize) -> Option<usize> {
    if rows == 0 {
        return None;
    }
    WIDTH_BUCKETS.iter().copied().find(|&b| b >= rows)
}

/// Widest step whose products normalize their f32 input rows themselves
/// (the `_norm` kernels); wider steps launch rms_norm. Every block of such
/// a product re-reads the step's f32 rows: past 16 rows, or rows wider than
/// [`FUSED_NORM_MAX_HIDDEN`], that costs more than the launch it saves.
pub const FUSED_NORM_MAX_ROWS: usize = 16;

/// Widest hidden size whose products normalize their input themselves.
pub const FUSED_NORM_MAX_HIDDEN: usize = 1024;

/// Tensor-core tiles of the skinny product at a bucket width: one of the
/// compiled variants 1, 2, 4, 8, 16.
pub fn skinny_tiles(bucket: usize) -> usize {
    bucket.div_ceil(MMA_TILE_ROWS).next_power_of_two()
}

/// Widest skinny tile count whose blocks may load their first weights into
/// registers before they wait for the kernel ahead (matmul.cu's PRELOAD,
/// the `_preload` and `_norm` kernels), and the K up to which that covers a
/// warp's whole share of K (4 steps of 32 values for each of MATMUL_WARPS
/// warps).
pub const SKINNY_PRELOAD_MAX_TILES: usize = 2;
pub const SKINNY_PRELOAD_MAX_K: usize = 1024;

/// Whether a skinny product of `tiles` tiles over K = `k` in `blocks`
/// blocks on a GPU of `sms` multiprocessors runs a preloading kernel: where
/// the preload holds all of K, or where the grid is at most one block an SM
/// (latency-bound, registers to spare). The preload's registers cost
/// blocks an SM, which slowed the 7B shape's big grids (2,368 gate/up
/// blocks) at K = 3584 by up to 16% at 2-8 rows, while preloading every
/// product of the small models saved 4-8% a step (measured on the H200:
/// bench/results/2026-11-29-h200-prologue/experiments.txt, item 2).
pub fn skinny_preloads(tiles: usize, k: usize, blocks: usize, sms: usize) -> bool {
    tiles <= SKINNY_PRELOAD_MAX_TILES && (k <= SKINNY_PRELOAD_MAX_K || blocks <= sms)
}

/// K values one unrolled iteration of a skinny warp covers at `tiles` tiles
/// (matmul.cu's UNROLL steps of 32 values for each of MATMUL_WARPS warps).
pub fn skinny_stride(tiles: usize) -> usize {
    let unroll = match tiles {
        0..=2 => 4,
        3..=8 => 2,
        _ => 1,
    };
    MATMUL_WARPS * 32 * unroll
}

/// Most blocks an SM up to which skinny products pipeline their loads with
/// the full unroll ([`Pipelining::Deep`]). Its second set of weight
/// registers (about 95 a thread) leaves room for two 8-warp blocks an SM
/// instead of five, which costs grids of many blocks; measured on the H200
/// (bench/results/2026-11-29-h200-loads/experiments.txt): limits of 1, 2,
/// 3 and unbounded gave the small models the same steps, and the 7B
/// shape's one-token step 5.00, 4.87 and 4.89 ms at 2, 3 and unbounded
/// (its QKV product has 288 blocks, its gate/up 2,368).
pub const SKINNY_PIPELINE_MAX_BLOCKS_PER_SM: usize = 3;

/// How a skinny product's warps overlap their weight loads with their MMAs
/// (matmul.cu's PIPELINE); the bits are the same in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipelining {
    /// A warp loads its next steps, then runs their MMAs.
    Off,
    /// It issues the next steps' loads before the current steps' MMAs
    /// (`_pipe`).
    Deep,
    /// The same with half as many steps at a time and fewer registers
    /// (`_pipe_lean`, one tile only): for grids of many blocks, where Deep's
    /// registers would cost blocks an SM. Measured on the H200: the 7B
    /// shape's gate/up grid (2,368 blocks) and the 1.5B's (1,120) took 1-3%
    /// off their models' one- to eight-token steps (experiments.txt).
    Lean,
}

/// The pipelining of a skinny product of `tiles` tiles over K = `k` in
/// `blocks` blocks on a GPU of `sms` multiprocessors: none where a warp
/// walks K in one iteration (nothing to overlap; the registers would only
/// cost blocks), Deep up to [`SKINNY_PIPELINE_MAX_BLOCKS_PER_SM`] blocks an
/// SM, Lean past that at one tile.
pub fn skinny_pipelining(tiles: usize, k: usize, blocks: usize, sms: usize) -> Pipelining {
    if k <= skinny_stride(tiles) {
        Pipelining::Off
    } else if blocks <= SKINNY_PIPELINE_MAX_BLOCKS_PER_SM * sms {
        Pipelining::Deep
    } else if tiles == 1 {
        Pipelining::Lean
    } else {
        Pipelining::Off
    }
}

/// How a skinny product loads its weights (matmul.cu's PRELOAD and
/// PIPELINE); the bits are the same either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkinnyLoads {
    pub preload: bool,
    pub pipelining: Pipelining,
}

impl SkinnyLoads {
    /// The loads of a product of `tiles` tiles over K = `k` in `blocks`
    /// blocks on a GPU of `sms` multiprocessors.
    pub fn choose(tiles: usize, k: usize, blocks: usize, sms: usize) -> Self {
        Self { preload: skinny_preloads(tiles, k, blocks, sms), pipelining: skinny_pipelining(tiles, k, blocks, sms) }
    }
}

/// Blocks of the skinny product for a weight of `n` rows (16 rows a block).
pub fn skinny_blocks(n: usize) -> usize {
    n.div_ceil(MMA_WEIGHT_ROWS)
}

/// Rows whose GQA groups make one attention block's units at width
/// `bucket`, 0 for tiles of [`ATTENTION_BLOCK_UNITS`] units whatever the
/// rows: up to 64 rows, more blocks of fewer units finish sooner than fewer
/// fuller ones (their last block's merge is shorter). On the H200,
/// SmolLM2 at 512 tokens of context: 4 rows 0.580 ms a step with a row a
/// block against 0.656 with 16 units (bench/results/2026-11-29-h200-attention-mma);
/// 16 rows 0.793 with two rows a block against 0.84-0.85, and at 2,048
/// tokens the 16- to 64-row steps 1-2% faster with 2, 4 and 4 rows
/// (bench/results/2026-11-29-h200-tiles).
pub fn attention_tile_rows(bucket: usize) -> usize {
    match bucket {
        0..=8 => 1,
        9..=16 => 2,
        17..=64 => 4,
        _ => 0,
    }
}

/// (row, query head) units an attention block takes at width `bucket`
/// when each KV head serves `group` query heads: the GQA groups of
/// [`attention_tile_rows`] rows where they fit a tile, else
/// [`ATTENTION_BLOCK_UNITS`].
pub fn attention_tile_units(bucket: usize, group: usize) -> usize {
    let units = attention_tile_rows(bucket) * group;
    if (1..=ATTENTION_BLOCK_UNITS).contains(&units) {
        units
    } else {
        ATTENTION_BLOCK_UNITS
    }
}

/// Attention blocks along a step's units for each KV head at width
/// `bucket` when each KV head serves `group` query heads: the bucket's
/// (row, query head) units, row-major, in tiles of
/// [`attention_tile_units`] (a GQA group may span tiles, and a tile rows).
pub fn attention_unit_tiles(bucket: usize, group: usize) -> usize {
    (bucket * group).div_ceil(attention_tile_units(bucket, group)).max(1)
}

/// Dynamic shared memory of an attention block for heads of `head_dim`:
/// two buffers of a chunk's K and V rows (padded) in bf16, which the merge
/// then reuses for each unit's split maxima, weights and sums; then the
/// chunk's probabilities (a padded bf16 row a unit) and each warp's
/// position group's maximum and sum a unit (f32).
pub fn attention_shared_bytes(head_dim: usize) -> usize {
    let buffers = 2 * 2 * ATTENTION_CHUNK * (head_dim + ATTENTION_PAD) * 2;
    let merge = (2 * ATTENTION_BLOCK_UNITS * (ATTENTION_MAX_SPLITS + 1) + ATTENTION_BLOCK_UNITS) * 4;
    let probs = ATTENTION_BLOCK_UNITS * (ATTENTION_CHUNK + ATTENTION_PAD) * 2;
    let groups = 2 * ATTENTION_WARPS * ATTENTION_BLOCK_UNITS * 4;
    buffers.max(merge) + probs + groups
}

/// Weight rows of one block of the wide product (matmul.cu's WIDE_ROWS).
pub const WIDE_ROWS: usize = 64;

/// Tokens of one block of the wide product: 16 (the `_t2` kernels, 2 MMA
/// tiles), 32 (`_t4`) or 64 (`_t8`).
pub const WIDE_TOKENS: [usize; 3] = [16, 32, 64];

/// Stages of the wide product's shared-memory pipeline (matmul.cu's
/// WIDE_STAGES), each 256 K values of the block's weight rows and tokens.
pub const WIDE_STAGES: usize = 3;

/// Ways the wide product may split K among the blocks of a cluster
/// (matmul.cu's SPLIT; `_s2`, `_s4` kernels; thread-block clusters, so
/// sm_90 and later): block z of a split-s cluster loads 256 / s of each
/// stage's K values, and the blocks sum their outputs in the skinny
/// kernel's order, so the bits do not depend on the split.
pub const WIDE_SPLITS: [usize; 3] = [1, 2, 4];

/// Row stride, in bf16 values, of a wide stage split `split` ways: the
/// block's K values plus 32 of padding (matmul.cu's `wide_stride`).
pub fn wide_stride(split: usize) -> usize {
    256 / split + 32
}

/// Narrowest bucket whose bf16-input products may run the wide kernel
/// (below it, the skinny kernel reads every weight once for all rows with
/// less waste).
pub const WIDE_MIN_ROWS: usize = 16;

/// Dynamic shared memory of a wide product block of `tokens` tokens split
/// `split` ways: the pipeline's stages, which the block's sums (4 / split
/// slots of 4 row groups x tiles x 4 values x 32 lanes, f32) reuse at the
/// end.
pub fn wide_shared_bytes(tokens: usize, split: usize) -> usize {
    let stages = WIDE_STAGES * (WIDE_ROWS + tokens) * wide_stride(split) * 2;
    let sums = (4 / split) * 4 * (tokens / MMA_TILE_ROWS) * 4 * 32 * 4;
    stages.max(sums)
}

/// The blocks of a wide product: `tokens` tokens each (one of
/// [`WIDE_TOKENS`]), `token_tiles` x `row_tiles` clusters of `split`
/// blocks (one of [`WIDE_SPLITS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WideGrid {
    pub tokens: usize,
    pub token_tiles: usize,
    pub row_tiles: usize,
    pub split: usize,
}

impl WideGrid {
    pub fn blocks(&self) -> usize {
        self.token_tiles * self.row_tiles * self.split
    }
}

/// How many blocks of each wide kernel a GPU runs at once: `sms` times
/// `per_sm[t][s]`, the blocks an SM holds of the kernel of `WIDE_TOKENS[t]`
/// tokens split `WIDE_SPLITS[s]` ways (the driver's occupancy for its
/// registers and shared memory; 0 where it cannot run: splits without
/// clusters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WideSlots {
    pub sms: usize,
    pub per_sm: [[usize; WIDE_SPLITS.len()]; WIDE_TOKENS.len()],
}

impl WideSlots {
    /// One block an SM of every unsplit kernel, no split kernels.
    pub fn unsplit(sms: usize) -> Self {
        Self { sms, per_sm: [[1, 0, 0]; WIDE_TOKENS.len()] }
    }

    /// Blocks of the (`tokens`, `split`) kernel the GPU runs at once.
    pub fn of(&self, tokens: usize, split: usize) -> usize {
        let t = WIDE_TOKENS.iter().position(|&x| x == tokens);
        let s = WIDE_SPLITS.iter().position(|&x| x == split);
        t.zip(s).map_or(0, |(t, s)| self.sms * self.per_sm[t][s])
    }
}

/// The grid of a wide product of `n` weight rows over K = `k` at width
/// `bucket` on a GPU that runs `slots`: the narrowest block that holds the
/// bucket (64 tokens past 32); then, from [`WIDE_SPLIT_MIN_K`], K split
/// among twice as many blocks while they all run at once; then blocks of
/// half as many tokens while the grid would fill less than half the SMs.
/// Each step halves a block's work and keeps a row's bits (matmul.cu).
pub fn wide_grid(bucket: usize, n: usize, k: usize, slots: &WideSlots) -> WideGrid {
    let [narrowest, .., widest] = WIDE_TOKENS;
    let tokens = WIDE_TOKENS.iter().copied().find(|&t| t >= bucket).unwrap_or(widest);
    let mut grid =
        WideGrid { tokens, token_tiles: bucket.div_ceil(tokens), row_tiles: n.div_ceil(WIDE_ROWS), split: 1 };
    while k >= WIDE_SPLIT_MIN_K && grid.split < WIDE_SPLITS[WIDE_SPLITS.len() - 1] {
        let wider = WideGrid { split: 2 * grid.split, ..grid };
        if wider.blocks() > slots.of(wider.tokens, wider.split) {
            break;
        }
        grid = wider;
    }
    while grid.tokens > narrowest && 2 * grid.blocks() < slots.sms {
        grid.tokens /= 2;
        grid.token_tiles = bucket.div_ceil(grid.tokens);
    }
    grid
}

/// Shortest K the wide product splits. Measured on the H200
/// (bench/results/2026-11-29-h200-split): split from K = 2,048, the 7B
/// shape's 32-row step took 6.24 ms against 7.02 unsplit and the 1.5B
/// shape's 2.76 against 3.21; split from K = 1,024 or below, SmolLM2's
/// 128-row step (its K of 576 and 1,536) took 1.62 ms against 1.57.
pub const WIDE_SPLIT_MIN_K: usize = 2048;

/// Whether a product of `n` weight rows at width `bucket` on a GPU of `sms`
/// multiprocessors runs the wide kernel: always from [`SKINNY_MAX_ROWS`]
/// rows (at 128, the skinny kernel's 16-tile blocks are slower even when
/// the wide grid fills a fifth of the GPU; past it there is no skinny
/// kernel), and from [`WIDE_MIN_ROWS`] rows when its grid
/// (one block an SM) fills at least a quarter of the GPU; smaller grids
/// leave the skinny kernel's 8-warp blocks more parallelism. Measured on
/// the H200 (BENCHMARKS.md, "Wide products").
pub fn prefers_wide(bucket: usize, n: usize, sms: usize) -> bool {
    let unsplit = wide_grid(bucket, n, 0, &WideSlots::unsplit(sms));
    bucket >= SKINNY_MAX_ROWS || (bucket >= WIDE_MIN_ROWS && 4 * unsplit.blocks() >= sms)
}

/// Blocks of a grid-stride elementwise kernel over `total` elements: enough
/// to fill `sms` multiprocessors several times, never more than needed.
pub fn elementwise_blocks(total: usize, threads: usize, sms: usize) -> usize {
    total.div_ceil(threads).clamp(1, (sms * 8).max(1))
}

/// The order of the fused gate/up weight's rows for the SwiGLU epilogue of
/// the skinny product: entry r is the source row (gate rows `0..inter`,
/// then up rows `inter..2 inter`) of device row r. Each 16-row block holds
/// gate units 8b..8b+7 then the same units' up rows, so one lane of the MMA
/// holds a (gate, up) pair. `None` unless `inter` is a multiple of 8.
pub fn swiglu_row_order(inter: usize) -> Option<Vec<usize>> {
    if !inter.is_multiple_of(8) {
        return None;
    }
    let blocks =
        (0..inter / 8).flat_map(|b| (0..8).map(move |g| 8 * b + g).chain((0..8).map(move |g| inter + 8 * b + g)));
    Some(blocks.collect())
}

/// The order of the fused QKV weight's rows (`heads` heads of `head_dim`
/// rows each, q then k then v) for the RoPE epilogue of the skinny product:
/// entry r is the source row of device row r. Each 16-row block holds dims
/// 8c..8c+7 of one head, then dims 8c + d/2.., so one lane holds a RoPE pair
/// (i, i + d/2). `None` unless `head_dim` is a multiple of 16.
pub fn rope_row_order(heads: usize, head_dim: usize) -> Option<Vec<usize>> {
    if head_dim == 0 || !head_dim.is_multiple_of(16) {
        return None;
    }
    let half = head_dim / 2;
    let rows = (0..heads).flat_map(|h| {
        (0..head_dim / 16).flat_map(move |c| {
            let base = h * head_dim + 8 * c;
            (0..8).map(move |g| base + g).chain((0..8).map(move |g| base + half + g))
        })
    });
    Some(rows.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_at_the_smallest_bucket_that_holds_them() {
        assert_eq!(bucket_for(0), None);
        assert_eq!(bucket_for(1), Some(8));
        assert_eq!(bucket_for(8), Some(8));
        assert_eq!(bucket_for(9), Some(16));
        assert_eq!(bucket_for(33), Some(64));
        assert_eq!(bucket_for(129), Some(256));
        assert_eq!(bucket_for(257), Some(512));
        assert_eq!(bucket_for(MAX_STEP_ROWS), Some(512));
        assert_eq!(bucket_for(MAX_STEP_ROWS + 1), None);
    }

    #[test]
    fn every_bucket_has_a_compiled_tile_count() {
        let compiled = [1, 2, 4, 8, 16];
        for bucket in WIDTH_BUCKETS.into_iter().filter(|&b| b <= SKINNY_MAX_ROWS) {
            let tiles = skinny_tiles(bucket);
            assert!(compiled.contains(&tiles), "bucket {bucket}");
            assert!(tiles * MMA_TILE_ROWS >= bucket, "bucket {bucket} fits its tiles");
        }
    }

    #[test]
    fn skinny_blocks_cover_every_weight_row() {
        assert_eq!(skinny_blocks(1), 1);
        assert_eq!(skinny_blocks(16), 1);
        assert_eq!(skinny_blocks(17), 2);
        assert_eq!(skinny_blocks(49152), 3072);
    }

    #[test]
    fn wide_grids_cover_the_step_and_fill_the_gpu() {
        let grid = |tokens, token_tiles, row_tiles, split| WideGrid { tokens, token_tiles, row_tiles, split };
        // The H200's occupancy (blocks an SM of 16, 32, 64 tokens x split 1,
        // 2, 4), as the driver reported it (bench/results/2026-11-29-h200-split).
        let h200 = WideSlots { sms: 132, per_sm: [[1, 2, 3], [1, 2, 2], [1, 1, 2]] };
        let plain = WideSlots::unsplit(132);
        // A 7B gate/up product at 128 rows: 592 row tiles of 64, 64 tokens.
        assert_eq!(wide_grid(128, 37888, 3584, &h200), grid(64, 2, 592, 1));
        // SmolLM2's O product at 128 rows: 18 blocks of 64 tokens would
        // leave most SMs idle; its K is too short to split, so 72 blocks of
        // 16 tokens.
        assert_eq!(wide_grid(128, 576, 576, &h200), grid(16, 8, 9, 1));
        assert_eq!(wide_grid(128, 576, 1536, &h200), grid(16, 8, 9, 1));
        assert_eq!(wide_grid(32, 37888, 3584, &h200), grid(32, 1, 592, 1));
        // The 7B O and down products at 32 rows: 56 clusters of 4 (two
        // blocks an SM); without clusters, 112 blocks of 16 tokens.
        assert_eq!(wide_grid(32, 3584, 3584, &h200), grid(32, 1, 56, 4));
        assert_eq!(wide_grid(32, 3584, 18944, &h200), grid(32, 1, 56, 4));
        assert_eq!(wide_grid(32, 3584, 3584, &plain), grid(16, 2, 56, 1));
        // Its QKV product: 72 clusters of 2 at 32 rows, of 4 at 16.
        assert_eq!(wide_grid(32, 4608, 3584, &h200), grid(32, 1, 72, 2));
        assert_eq!(wide_grid(16, 4608, 3584, &h200), grid(16, 1, 72, 4));
        assert_eq!(wide_grid(16, 4608, 3584, &plain), grid(16, 1, 72, 1));
        // At 128 rows two 64-token blocks do not fit an SM: no split.
        assert_eq!(wide_grid(128, 3584, 3584, &h200), grid(64, 2, 56, 1));
        for (bucket, n) in
            [(16, 4608), (32, 4608), (64, 576), (128, 3584), (128, 49152), (256, 576), (256, 37888), (512, 576)]
        {
            for (k, slots) in [(576, &h200), (18944, &h200), (18944, &plain)] {
                let g = wide_grid(bucket, n, k, slots);
                assert!(WIDE_TOKENS.contains(&g.tokens) && WIDE_SPLITS.contains(&g.split));
                assert!(g.token_tiles * g.tokens >= bucket && g.row_tiles * WIDE_ROWS >= n);
                assert!(g.split == 1 || g.blocks() <= slots.of(g.tokens, g.split), "a split grid runs at once");
                assert!(g.split == 1 || k >= WIDE_SPLIT_MIN_K);
            }
        }
        assert_eq!(wide_grid(16, 0, 18944, &h200).blocks(), 0, "no rows, no blocks (and no endless split)");
        assert!(prefers_wide(128, 576, 132), "the skinny kernel's widest bucket always");
        assert!(prefers_wide(MAX_STEP_ROWS, 576, 132), "past it always");
        assert_eq!(WIDTH_BUCKETS.last(), Some(&MAX_STEP_ROWS));
        assert!(prefers_wide(32, 3584, 132), "56 blocks");
        assert!(prefers_wide(64, 896, 132), "56 blocks of 16 tokens");
        assert!(!prefers_wide(32, 896, 132), "28 blocks");
        assert!(prefers_wide(16, 3072, 132), "48 blocks");
        assert!(!prefers_wide(8, 49152, 132), "8-row steps stay skinny");
    }

    #[test]
    fn wide_blocks_fit_the_shared_memory_of_a_hopper_sm() {
        assert_eq!(wide_shared_bytes(64, 1), 3 * 128 * 288 * 2);
        assert_eq!(wide_shared_bytes(64, 4), 3 * 128 * 96 * 2);
        for tokens in WIDE_TOKENS {
            for split in WIDE_SPLITS {
                assert!(wide_shared_bytes(tokens, split) <= 227 * 1024);
                assert!(
                    wide_shared_bytes(tokens, split) == WIDE_STAGES * (WIDE_ROWS + tokens) * wide_stride(split) * 2,
                    "the sums fit the stages they reuse"
                );
                assert_eq!(wide_stride(split) / 2 % 32, 16, "two rows of a phase 16 banks apart");
            }
        }
    }

    #[test]
    fn attention_blocks_stay_within_a_block_and_its_shared_memory() {
        assert_eq!(attention_unit_tiles(1, 3), 1);
        assert_eq!(attention_unit_tiles(8, 3), 8, "a row a block");
        assert_eq!(attention_unit_tiles(16, 3), 8, "two rows a block");
        assert_eq!(attention_unit_tiles(64, 3), 16, "four rows a block");
        assert_eq!(attention_unit_tiles(16, 7), 8, "two groups of 7 a block");
        assert_eq!(attention_unit_tiles(32, 7), 14, "four groups of 7 overflow a tile: 16 units");
        assert_eq!(attention_unit_tiles(128, 3), 24, "SmolLM2: 384 units");
        assert_eq!(attention_unit_tiles(8, 32), 16, "a group of 32 spans two tiles");
        for group in [1, 2, 3, 6, 7, 8, 16, 32, 64] {
            for bucket in WIDTH_BUCKETS {
                let (units, tiles) = (attention_tile_units(bucket, group), attention_unit_tiles(bucket, group));
                assert!((1..=ATTENTION_BLOCK_UNITS).contains(&units), "group {group}, bucket {bucket}");
                assert!(tiles * units >= bucket * group, "group {group}, bucket {bucket}");
                assert!(tiles <= bucket * group, "the counters hold a tile a (row, head)");
            }
        }
        for bucket in WIDTH_BUCKETS {
            let blocks = attention_kv_blocks(bucket);
            assert!((1..=ATTENTION_SPLITS).contains(&blocks), "bucket {bucket}");
        }
        assert_eq!(attention_kernel(64), Some("attention_d64"));
        for d in ATTENTION_HEAD_DIMS {
            assert_eq!(attention_kernel(d), Some(format!("attention_d{d}").as_str()), "head_dim {d}");
            assert!(attention_shared_bytes(d) <= 227 * 1024);
        }
        assert_eq!(attention_kernel(96), None);
        assert_eq!(attention_shared_bytes(64), 4 * 64 * 72 * 2 + 16 * 72 * 2 + 2 * 4 * 16 * 4);
        assert_eq!(attention_shared_bytes(16), 4 * 64 * 24 * 2 + 16 * 72 * 2 + 2 * 4 * 16 * 4);
    }

    #[test]
    fn kernel_sources_define_the_limits_written_here() {
        let attention = include_str!("cu/attention.cu");
        let matmul = include_str!("cu/matmul.cu");
        for (source, name, value) in [
            (attention, "CHUNK", ATTENTION_CHUNK),
            (attention, "WARPS", ATTENTION_WARPS),
            (attention, "UNITS", ATTENTION_BLOCK_UNITS),
            (attention, "PAD", ATTENTION_PAD),
            (attention, "MAX_SPLITS", ATTENTION_MAX_SPLITS),
            (matmul, "WARPS", MATMUL_WARPS),
            (matmul, "WIDE_ROWS", WIDE_ROWS),
            (matmul, "WIDE_STAGES", WIDE_STAGES),
        ] {
            let line = format!("#define {name} {value}");
            assert!(source.lines().any(|l| l == line || l.starts_with(&format!("{line} "))), "{line}");
        }
        for d in ATTENTION_HEAD_DIMS {
            assert!(attention.lines().any(|l| l == format!("ATTENTION({d})")), "attention_d{d}");
        }
        for (tokens, split) in WIDE_TOKENS.into_iter().flat_map(|t| WIDE_SPLITS.map(|s| (t, s))) {
            let line = format!("WIDE({}, {split},", tokens / MMA_TILE_ROWS);
            assert!(matmul.lines().any(|l| l.starts_with(&line)), "{line}");
        }
        assert!(matmul.contains("return 256 / SPLIT + 32;"), "wide_stride");
    }

    #[test]
    fn normalizing_products_always_preload() {
        let tiles = skinny_tiles(FUSED_NORM_MAX_ROWS);
        assert!(skinny_preloads(tiles, FUSED_NORM_MAX_HIDDEN, usize::MAX, 132), "matmul.cu compiles _norm only so");
        assert_eq!(SKINNY_PRELOAD_MAX_K, MATMUL_WARPS * 32 * 4, "one unrolled iteration of 4 steps a warp");
        assert!(skinny_preloads(1, 576, 192, 132), "SmolLM2's gate/up");
        assert!(skinny_preloads(1, 1536, 36, 132), "SmolLM2's down: 36 blocks");
        assert!(!skinny_preloads(1, 3584, 2368, 132), "the 7B shape's gate/up");
        assert!(!skinny_preloads(1, 18944, 224, 132), "the 7B shape's down");
        assert!(!skinny_preloads(4, 576, 36, 132), "32 rows");
    }

    #[test]
    fn products_pipeline_where_a_warp_loops_over_k() {
        use Pipelining::*;
        assert_eq!(skinny_stride(1), SKINNY_PRELOAD_MAX_K, "a preload holds one iteration");
        assert_eq!(skinny_pipelining(1, 576, 36, 132), Off, "SmolLM2's O: one iteration a warp");
        assert_eq!(skinny_pipelining(1, 1536, 36, 132), Deep, "SmolLM2's down");
        assert_eq!(skinny_pipelining(4, 576, 36, 132), Deep, "SmolLM2's O at 32 rows: two iterations of 512");
        assert_eq!(skinny_pipelining(1, 18944, 224, 132), Deep, "the 7B shape's down");
        assert_eq!(skinny_pipelining(1, 3584, 288, 132), Deep, "the 7B shape's QKV");
        assert_eq!(skinny_pipelining(1, 3584, 2368, 132), Lean, "the 7B shape's gate/up: 18 blocks an SM");
        assert_eq!(skinny_pipelining(2, 3584, 2368, 132), Off, "lean only at one tile");
        assert_eq!(skinny_pipelining(16, 256, 36, 132), Off, "K within one iteration at 16 tiles");
    }

    #[test]
    fn elementwise_grids_are_bounded() {
        assert_eq!(elementwise_blocks(1, 256, 132), 1);
        assert_eq!(elementwise_blocks(1000, 256, 132), 4);
        assert_eq!(elementwise_blocks(1 << 30, 256, 132), 1056);
    }

    fn is_permutation(order: &[usize]) -> bool {
        let mut seen = vec![false; order.len()];
        order.iter().all(|&r| r < seen.len() && !std::mem::replace(&mut seen[r], true))
    }

    #[test]
    fn swiglu_blocks_pair_each_gate_row_with_its_up_row() {
        assert_eq!(swiglu_row_order(12), None);
        let inter = 24;
        let order = swiglu_row_order(inter).expect("multiple of 8");
        assert!(is_permutation(&order));
        for (row, &source) in order.iter().enumerate() {
            // The kernel's reading: block b = row / 16, lane g = row % 8.
            let unit = (row / 16) * 8 + row % 8;
            let expected = if row % 16 < 8 { unit } else { inter + unit };
            assert_eq!(source, expected, "device row {row}");
        }
    }

    #[test]
    fn rope_blocks_hold_rotation_pairs_of_one_head() {
        assert_eq!(rope_row_order(2, 24), None);
        let (heads, d) = (3, 32);
        let order = rope_row_order(heads, d).expect("multiple of 16");
        assert!(is_permutation(&order));
        for (row, &source) in order.iter().enumerate() {
            // The kernel's reading: head = block / (d/16), i = (block % (d/16)) * 8 + row % 8.
            let block = row / 16;
            let (head, i) = (block / (d / 16), (block % (d / 16)) * 8 + row % 8);
            let dim = if row % 16 < 8 { i } else { i + d / 2 };
            assert_eq!(source, head * d + dim, "device row {row}");
        }
    }
}
