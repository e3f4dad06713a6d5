// Skinny products x @ w^T for 1..128 rows of x (bf16, (rows, K)) and
// w (bf16, (N, K)), f32 accumulation on the tensor cores (mma m16n8k16): the
// weight is the M side (16 rows a block), the tokens the N side (8 a tile), so
// each weight element is read once for all rows of the step. Every output
// element is the same chain of MMAs over K whatever the number of tiles, so a
// row's result does not depend on the width of its step (lossless
// speculation needs that). Requires K % 8 == 0.
//
// The x operand comes in one of two forms:
// - bf16 rows (x, (rows, K)), written by rms_norm or the SwiGLU epilogue;
// - f32 residual rows with the RMSNorm weight (skinny_*norm_t*, steps of up
//   to FUSED_NORM_MAX_ROWS rows): the block computes each row's scale
//   (warp_inv_rms, as rms_norm does) and normalizes x as it loads it, with
//   rms_norm's arithmetic, so the product sees the same bf16 values and the
//   step needs no rms_norm launch.
//
// Three epilogues share the loop, each fed by one lane with the sums of
// weight rows g and g + 8 of its block for one token, and each with a
// State: what it reads besides the sums, loaded early so no load is left
// on the kernel's tail (`prologue`: what the host wrote, before the kernel
// waits for the one ahead; `preload`: what earlier kernels wrote, right
// after):
// - skinny_t*: y (+)= the product, f32 (accumulate: the residual add).
// - skinny_swiglu_t*: the gate/up weight is interleaved in 16-row blocks
//   (block b: gate rows 8b..8b+7, then up rows 8b..8b+7), so a lane holds a
//   (gate, up) pair and writes silu(gate) * up to bf16 directly.
// - skinny_rope_t*: the fused QKV weight is permuted so block b of head h
//   holds head dims (8c..8c+7) then (8c+d/2..8c+d/2+7), c = b mod d/16: a
//   lane holds a RoPE pair (i, i + d/2), adds the bias, rotates q and k,
//   writes q (f32) and appends k and v (bf16) to the paged KV cache.
//
// Lane (g = lane / 4, c = lane % 4) loads 8 consecutive K values (16 bytes)
// of weight rows g and g + 8 and of token g of each tile at k0 + 8c, and
// feeds them to two MMAs; the fragment's logical K order is a permutation of
// memory order, the same one for both operands, so the dot product is exact.
#include <cuda_bf16.h>

#define WARPS 8
// K steps (of WARPS * 32 values) past those it loads into registers whose
// weights a block prefetches into L2 before it waits for the kernel ahead.
#define PREFETCH_STEPS 4

__device__ __forceinline__ uint4 load16(const __nv_bfloat16* p, bool ok) {
    if (!ok) return make_uint4(0u, 0u, 0u, 0u);
    return __ldg(reinterpret_cast<const uint4*>(p));
}

// x as bf16 rows.
struct Bf16Rows {
    const __nv_bfloat16* x;
    int k;
    __device__ void prepare(int, float*) const {}
    __device__ uint4 load(int token, int kk, bool ok, const float*) const { return load16(x + (size_t)token * k + kk, ok); }
};

// x as f32 residual rows, RMS-normalized with weight w on load.
struct NormedRows {
    const float* x;
    const float* w;
    float eps;
    int k;
    // Each row's scale into scale[token], one warp a row; the caller syncs.
    __device__ void prepare(int rows, float* scale) const {
        const int warp = threadIdx.x >> 5;
        for (int t = warp; t < rows; t += WARPS) {
            const float inv = warp_inv_rms(x + (size_t)t * k, k, eps);
            if ((threadIdx.x & 31) == 0) scale[t] = inv;
        }
    }
    __device__ uint4 load(int token, int kk, bool ok, const float* scale) const {
        if (!ok) return make_uint4(0u, 0u, 0u, 0u);
        const float4* xv = reinterpret_cast<const float4*>(x + (size_t)token * k + kk);
        const float4* wv = reinterpret_cast<const float4*>(w + kk);
        const float4 x0 = __ldg(xv), x1 = __ldg(xv + 1), w0 = __ldg(wv), w1 = __ldg(wv + 1);
        const float inv = scale[token];
        return make_uint4(pack_bf16(w0.x * (x0.x * inv), w0.y * (x0.y * inv)),
                          pack_bf16(w0.z * (x0.z * inv), w0.w * (x0.w * inv)),
                          pack_bf16(w1.x * (x1.x * inv), w1.y * (x1.y * inv)),
                          pack_bf16(w1.z * (x1.z * inv), w1.w * (x1.w * inv)));
    }
};

// Block = WARPS warps on the same 16 weight rows, splitting K: warp w takes
// the 32-wide K steps w, w + WARPS, ... (together 256 contiguous values of a
// row at a time), loading UNROLL steps ahead of their MMAs. The partial sums
// are added in a fixed order through shared memory ((w + 4) into w, then
// 1..3 into 0), so the result is deterministic and the same for any number
// of tiles.
//
// Before the block waits for the kernel ahead (pdl.cuh) it does all that
// needs nothing that kernel writes: reads the step (the host wrote it),
// with PRELOAD loads its first UNROLL steps of weights into registers (the
// whole slice of a 1- or 2-tile block's rows up to K = 1024), prefetches
// the next PREFETCH_STEPS into L2, and runs its epilogue pair's
// `prologue`. What is left after the wait is the x loads, the MMAs, the
// sums and the stores. PRELOAD costs registers (fewer blocks an SM), which
// slows products of long K (the host picks: geometry::skinny_preloads).
//
// PIPELINE (geometry::Pipelining): 0, a warp loads UNROLL steps, then runs
// their MMAs; 1 (`_pipe`), it issues the loads of its next UNROLL steps
// before the MMAs of the current ones, so its loads stay in flight while it
// computes, at the cost of a second set of weight registers; 2
// (`_pipe_lean`), the same with half the steps, fewer registers for grids
// of many blocks. The MMAs run in the same order in all three, so the bits
// do not change.
template <int TILES, bool PRELOAD, int PIPELINE, typename Input, typename Epilogue>
__device__ void skinny(const Input& input, const __nv_bfloat16* __restrict__ w, const unsigned* __restrict__ step,
                       int n, int k, const Epilogue& epilogue) {
    constexpr int UNROLL_BASE = TILES <= 2 ? 4 : (TILES <= 8 ? 2 : 1);
    constexpr int UNROLL = PIPELINE == 2 && UNROLL_BASE > 1 ? UNROLL_BASE / 2 : UNROLL_BASE;
    // Epilogue pairs: TILES * 64, one a thread up to 4 tiles (their State
    // is kept from the prologue), more for wider tiles (State loaded at the
    // end).
    constexpr int PAIRS = TILES * 2 * 32;
    constexpr bool EARLY_STATE = PAIRS <= WARPS * 32;
    __shared__ float partial[WARPS / 2][TILES * 4][32];
    __shared__ float scale[TILES * 8];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c = lane & 3;
    const int row0 = blockIdx.x * 16;
    if (row0 >= n) return;
    const bool lo_ok = row0 + g < n, hi_ok = row0 + g + 8 < n;
    const __nv_bfloat16* w_lo = w + (size_t)(row0 + g) * k;
    const __nv_bfloat16* w_hi = w + (size_t)(row0 + g + 8) * k;
    const int rows = (int)step[0];
    constexpr int PRELOADED = PRELOAD ? UNROLL : 0;
    uint4 a[UNROLL], b[UNROLL];
#pragma unroll
    for (int u = 0; u < PRELOADED; ++u) {
        const int kk = warp * 32 + u * WARPS * 32 + 8 * c;
        a[u] = load16(w_lo + kk, lo_ok && kk < k);
        b[u] = load16(w_hi + kk, hi_ok && kk < k);
    }
#pragma unroll
    for (int s = PRELOADED; s < PRELOADED + PREFETCH_STEPS; ++s) {
        const int kk = warp * 32 + s * WARPS * 32 + 8 * c;
        if (kk < k) {
            if (lo_ok) prefetch_l2(w_lo + kk);
            if (hi_ok) prefetch_l2(w_hi + kk);
        }
    }
    // This thread's epilogue pair (pair = threadIdx.x, see the end).
    const int pair_token = ((threadIdx.x >> 5) >> 1) * 8 + 2 * (lane & 3) + ((threadIdx.x >> 5) & 1);
    const int pair_row = row0 + (lane >> 2);
    const bool early = EARLY_STATE && threadIdx.x < PAIRS && pair_token < rows;
    typename Epilogue::State state{};
    if (early) epilogue.prologue(pair_token, pair_row, state);
    wait_for_producers();
    let_dependents_launch();
    if (early) epilogue.preload(pair_token, pair_row, state);
    input.prepare(rows, scale);
    __syncthreads();
    float acc[TILES][4];
#pragma unroll
    for (int j = 0; j < TILES; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    constexpr int STRIDE = WARPS * 32 * UNROLL;
    // The weights of the UNROLL steps from k0 into (a, b).
    auto load_steps = [&](int k0) {
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int kk = k0 + u * WARPS * 32 + 8 * c;
            a[u] = load16(w_lo + kk, lo_ok && kk < k);
            b[u] = load16(w_hi + kk, hi_ok && kk < k);
        }
    };
    // The MMAs of the UNROLL steps from k0 with their weights (wa, wb).
    auto mma_steps = [&](int k0, const uint4* wa, const uint4* wb) {
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int kk = k0 + u * WARPS * 32 + 8 * c;
#pragma unroll
            for (int j = 0; j < TILES; ++j) {
                const int token = j * 8 + g;
                const uint4 xv = input.load(token, kk, token < rows && kk < k, scale);
                mma_bf16(acc[j], wa[u].x, wb[u].x, wa[u].y, wb[u].y, xv.x, xv.y);
                mma_bf16(acc[j], wa[u].z, wb[u].z, wa[u].w, wb[u].w, xv.z, xv.w);
            }
        }
    };
    if constexpr (PIPELINE != 0) {
        if (!PRELOAD) load_steps(warp * 32);
        for (int k0 = warp * 32; k0 < k; k0 += STRIDE) {
            uint4 wa[UNROLL], wb[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; ++u) {
                wa[u] = a[u];
                wb[u] = b[u];
            }
            if (k0 + STRIDE < k) load_steps(k0 + STRIDE);
            mma_steps(k0, wa, wb);
        }
    } else {
        for (int k0 = warp * 32; k0 < k; k0 += STRIDE) {
            if (!PRELOAD || k0 != warp * 32) load_steps(k0);
            mma_steps(k0, a, b);
        }
    }
    // Round 1: warps 4..7 hand their sums to warps 0..3.
    if (warp >= WARPS / 2) {
#pragma unroll
        for (int j = 0; j < TILES; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) partial[warp - WARPS / 2][j * 4 + r][lane] = acc[j][r];
    }
    __syncthreads();
    if (warp < WARPS / 2) {
#pragma unroll
        for (int j = 0; j < TILES; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[j][r] += partial[warp][j * 4 + r][lane];
    }
    __syncthreads();
    // Round 2: warps 1..3 hand theirs to warp 0.
    if (warp >= 1 && warp < WARPS / 2) {
#pragma unroll
        for (int j = 0; j < TILES; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) partial[warp - 1][j * 4 + r][lane] = acc[j][r];
    }
    __syncthreads();
    // Warp 0 adds them up and leaves the totals in the free slot 3 ...
    if (warp == 0) {
#pragma unroll
        for (int other = 0; other < WARPS / 2 - 1; ++other)
#pragma unroll
            for (int j = 0; j < TILES; ++j)
#pragma unroll
                for (int r = 0; r < 4; ++r) acc[j][r] += partial[other][j * 4 + r][lane];
#pragma unroll
        for (int j = 0; j < TILES; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) partial[WARPS / 2 - 1][j * 4 + r][lane] = acc[j][r];
    }
    __syncthreads();
    // ... and every thread of the block runs the epilogue on a share of
    // them, so its global reads and writes are spread over all warps. Pair
    // (q, l): lane l's sums of rows g and g + 8 for token j * 8 + 2c + p,
    // q = 2j + p.
    const float(*totals)[32] = partial[WARPS / 2 - 1];
    if constexpr (EARLY_STATE) {
        const int q = threadIdx.x >> 5, j = q >> 1, p = q & 1;
        if (early) epilogue(pair_token, pair_row, totals[j * 4 + p][lane], totals[j * 4 + p + 2][lane], state);
    } else {
        for (int pair = threadIdx.x; pair < PAIRS; pair += WARPS * 32) {
            const int l = pair & 31, q = pair >> 5;
            const int j = q >> 1, p = q & 1;
            const int token = j * 8 + 2 * (l & 3) + p, row = row0 + (l >> 2);
            if (token < rows) store_late(epilogue, token, row, totals[j * 4 + p][l], totals[j * 4 + p + 2][l]);
        }
    }
}

// Runs an epilogue for one pair with its State loaded on the spot.
template <typename Epilogue>
__device__ __forceinline__ void store_late(const Epilogue& epilogue, int token, int row, float lo, float hi) {
    typename Epilogue::State state{};
    epilogue.prologue(token, row, state);
    epilogue.preload(token, row, state);
    epilogue(token, row, lo, hi, state);
}

// y (+)= the product, f32. State: the y values added to.
struct StoreF32 {
    float* y;
    int n, accumulate;
    struct State {
        float lo, hi;
    };
    __device__ void prologue(int, int, State&) const {}
    __device__ void preload(int token, int row, State& s) const {
        if (!accumulate) return;
        const float* dst = y + (size_t)token * n + row;
        if (row < n) s.lo = dst[0];
        if (row + 8 < n) s.hi = dst[8];
    }
    __device__ void operator()(int token, int row, float lo, float hi, const State& s) const {
        float* dst = y + (size_t)token * n + row;
        if (row < n) dst[0] = accumulate ? s.lo + lo : lo;
        if (row + 8 < n) dst[8] = accumulate ? s.hi + hi : hi;
    }
};

// silu(gate) * up of the interleaved gate/up rows, bf16 (rows, n / 2).
struct SwiGlu {
    __nv_bfloat16* out;
    int inter;
    struct State {};
    __device__ void prologue(int, int, State&) const {}
    __device__ void preload(int, int, State&) const {}
    __device__ void operator()(int token, int row, float gate, float up, const State&) const {
        // Block b = row / 16 covers intermediate units 8b..8b+7; n % 16 == 0.
        const int unit = (row >> 4) * 8 + (row & 7);
        out[(size_t)token * inter + unit] = __float2bfloat16(gate / (1.0f + expf(-gate)) * up);
    }
};

#define BLOCK_TOKENS 16

// Bias, RoPE and the KV append of the permuted QKV rows (see the top).
// State, all from the host's data: the biases, the rotation and the KV
// cache entry of the pair's position.
struct RopeAppend {
    const float* bias;      // ((hq+2hk)*d), original row order, or null
    const float* inv_freq;  // (d/2)
    const unsigned* step;   // [n, start]
    const unsigned* table;  // block table
    float* q_out;           // (rows, hq*d)
    __nv_bfloat16* k_cache;  // (blocks, 16, hk, d)
    __nv_bfloat16* v_cache;  // (blocks, 16, hk, d)
    int hq, hk, d;
    struct State {
        float bias_a, bias_b, cs, sn;
        size_t entry;
    };
    __device__ void prologue(int token, int row, State& s) const {
        const int half = d >> 1, per_head = d >> 4;
        const int block = row >> 4, head = block / per_head;
        const int i = (block % per_head) * 8 + (row & 7);
        if (bias) {
            s.bias_a = bias[head * d + i];
            s.bias_b = bias[head * d + i + half];
        }
        const unsigned position = step[1] + (unsigned)token;
        s.entry = ((size_t)table[position / BLOCK_TOKENS] * BLOCK_TOKENS + position % BLOCK_TOKENS) * hk;
        const float angle = (float)position * inv_freq[i];
        s.cs = cosf(angle);
        s.sn = sinf(angle);
    }
    __device__ void preload(int, int, State&) const {}
    __device__ void operator()(int token, int row, float a, float b, const State& s) const {
        const int half = d >> 1, per_head = d >> 4;
        const int block = row >> 4, head = block / per_head;
        const int i = (block % per_head) * 8 + (row & 7);
        if (bias) {
            a += s.bias_a;
            b += s.bias_b;
        }
        const size_t entry = s.entry;
        if (head >= hq + hk) {
            __nv_bfloat16* dst = v_cache + (entry + (head - hq - hk)) * d;
            dst[i] = __float2bfloat16(a);
            dst[i + half] = __float2bfloat16(b);
            return;
        }
        // Rounded products, no FMA: the skinny kernels run this with the
        // State from before the wait, the others with it computed on the
        // spot, and no contraction choice of the compiler may make the two
        // differ (a row's bits must not depend on its step's width).
        const float cs = s.cs, sn = s.sn;
        const float ra = __fsub_rn(__fmul_rn(a, cs), __fmul_rn(b, sn));
        const float rb = __fadd_rn(__fmul_rn(b, cs), __fmul_rn(a, sn));
        if (head < hq) {
            float* dst = q_out + (size_t)token * hq * d + head * d;
            dst[i] = ra;
            dst[i + half] = rb;
        } else {
            __nv_bfloat16* dst = k_cache + (entry + (head - hq)) * d;
            dst[i] = __float2bfloat16(ra);
            dst[i + half] = __float2bfloat16(rb);
        }
    }
};

// The entry points of one tile count, input form and weight loading:
// skinny[_swiglu|_rope]<NAME>_t<TILES><SUFFIX>, where INPUT builds the x
// operand from the parameters X_PARAMS; SUFFIX _preload for PRELOAD, _pipe
// for PIPELINE 1, _preload_pipe for both, _pipe_lean for PIPELINE 2.
#define SKINNY(TILES, NAME, X_PARAMS, INPUT, PRELOAD, PIPELINE, SUFFIX)                                                 \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                                    \
        skinny##NAME##_t##TILES##SUFFIX(X_PARAMS, const __nv_bfloat16* __restrict__ w, float* __restrict__ y,  \
                                        const unsigned* __restrict__ step, int n, int k, int accumulate) {      \
        skinny<TILES, PRELOAD, PIPELINE>(INPUT, w, step, n, k, StoreF32{y, n, accumulate});                                \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                                    \
        skinny_swiglu##NAME##_t##TILES##SUFFIX(X_PARAMS, const __nv_bfloat16* __restrict__ w,                  \
                                               __nv_bfloat16* __restrict__ out, const unsigned* __restrict__ step, \
                                               int n, int k) {                                                  \
        skinny<TILES, PRELOAD, PIPELINE>(INPUT, w, step, n, k, SwiGlu{out, n / 2});                                        \
    }                                                                                                           \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) skinny_rope##NAME##_t##TILES##SUFFIX(              \
        X_PARAMS, const __nv_bfloat16* __restrict__ w, const unsigned* __restrict__ step, int n, int k,         \
        const float* __restrict__ bias, const float* __restrict__ inv_freq, const unsigned* __restrict__ table, \
        float* __restrict__ q_out, __nv_bfloat16* __restrict__ k_cache, __nv_bfloat16* __restrict__ v_cache,   \
        int hq, int hk, int d) {                                                                                \
        skinny<TILES, PRELOAD, PIPELINE>(INPUT, w, step, n, k,                                                             \
                               RopeAppend{bias, inv_freq, step, table, q_out, k_cache, v_cache, hq, hk, d});    \
    }

#define COMMA ,
#define BF16_PARAMS const __nv_bfloat16* __restrict__ x
#define BF16_INPUT (Bf16Rows{x, k})
#define NORM_PARAMS const float* __restrict__ x COMMA const float* __restrict__ norm_w COMMA float eps
#define NORM_INPUT (NormedRows{x, norm_w, eps, k})

SKINNY(1, , BF16_PARAMS, BF16_INPUT, false, 0, )
SKINNY(2, , BF16_PARAMS, BF16_INPUT, false, 0, )
SKINNY(4, , BF16_PARAMS, BF16_INPUT, false, 0, )
SKINNY(8, , BF16_PARAMS, BF16_INPUT, false, 0, )
SKINNY(16, , BF16_PARAMS, BF16_INPUT, false, 0, )
SKINNY(1, , BF16_PARAMS, BF16_INPUT, false, 1, _pipe)
SKINNY(2, , BF16_PARAMS, BF16_INPUT, false, 1, _pipe)
SKINNY(4, , BF16_PARAMS, BF16_INPUT, false, 1, _pipe)
SKINNY(8, , BF16_PARAMS, BF16_INPUT, false, 1, _pipe)
SKINNY(16, , BF16_PARAMS, BF16_INPUT, false, 1, _pipe)
// Lean pipelines at one tile only: skinny products of many blocks run only
// at the narrowest steps (wider ones take the wide kernel).
SKINNY(1, , BF16_PARAMS, BF16_INPUT, false, 2, _pipe_lean)
// SKINNY_PRELOAD_MAX_TILES = 2.
SKINNY(1, , BF16_PARAMS, BF16_INPUT, true, 0, _preload)
SKINNY(2, , BF16_PARAMS, BF16_INPUT, true, 0, _preload)
SKINNY(1, , BF16_PARAMS, BF16_INPUT, true, 1, _preload_pipe)
SKINNY(2, , BF16_PARAMS, BF16_INPUT, true, 1, _preload_pipe)
// FUSED_NORM_MAX_ROWS = 16: buckets 8 and 16; their K (the hidden size, at
// most FUSED_NORM_MAX_HIDDEN = SKINNY_PRELOAD_MAX_K) always preloads, and
// the preload holds all of it, so they never pipeline.
SKINNY(1, _norm, NORM_PARAMS, NORM_INPUT, true, 0, )
SKINNY(2, _norm, NORM_PARAMS, NORM_INPUT, true, 0, )

// ---------------------------------------------------------------------------
// Wide products: the same products for steps of 16 to 512 rows of bf16 x,
// with the weight and x staged in shared memory, so a block reads each
// weight element once for up to 64 tokens and each x element once for 64
// weight rows (the skinny kernel's blocks each re-read all of x through L2:
// 2 GB for one 128-row gate/up product of a 7B model).
//
// They give the skinny kernel's bits. The skinny block's 8 warps become 8
// "virtual warps": virtual warp v takes the 32-value K chunks v, v + 8, ...
// in order, with the skinny kernel's fragments, and the virtual warps' sums
// meet in the skinny kernel's order: t_w = v_w + v_{w+4} (w = 0..3), then
// ((t_0 + t_1) + t_2) + t_3. What changes is the tile: WIDE_ROWS weight
// rows (4 MMA row groups) times 8 TILES tokens, whose operands arrive
// through a WIDE_STAGES-deep cp.async pipeline, each stage 256 contiguous K
// values of every row (one chunk for each virtual warp), so the loads are
// coalesced. Requires K % 8 == 0.
//
// SPLIT (1, 2 or 4) splits K among a cluster of SPLIT blocks (Hopper's
// thread-block clusters, grid z), for grids of long K that would leave SMs
// idle (geometry::wide_grid):
// block z owns t_w for w in [4z/SPLIT, 4(z+1)/SPLIT), so it loads only its
// virtual warps' chunks (256/SPLIT values a row a stage) and runs each of
// them on SPLIT real warps, each on 4/SPLIT row groups. The blocks meet in
// distributed shared memory: each sums its share of the tile's outputs
// from the four t_w in the order above, wherever they sit. The sums are the
// same whatever SPLIT is. An unsplit block of 64 tokens holds an SM (its
// registers), smaller ones may share one (geometry::WideSlots); the
// pipeline's depth hides the memory latency.

#define WIDE_ROWS 64
#define WIDE_STAGES 3

// Row stride of a stage in bf16 values: the block's 256 / SPLIT K values
// plus 32 of padding, so the 8 lanes of a shared-memory phase (two rows)
// hit distinct banks (a stride of 16 banks modulo 32).
template <int SPLIT>
__host__ __device__ constexpr int wide_stride() {
    return 256 / SPLIT + 32;
}

// The virtual warp of a SPLIT block's local chunk q (block z owns t_w for
// w in [z T, z T + T), T = 4 / SPLIT: virtual warps w and w + 4).
template <int SPLIT>
__device__ __forceinline__ int wide_virtual_warp(int z, int q) {
    constexpr int T = 4 / SPLIT;
    return q < T ? z * T + q : z * T + q - T + 4;
}

// Rows of one stage (`count` rows from row0 of `limit` valid rows, K = k)
// at K block `kb`: the block's chunks of each row, 16 bytes a lane, 32 /
// SPLIT lanes a row.
template <int SPLIT>
__device__ __forceinline__ void load_rows(__nv_bfloat16* stage, const __nv_bfloat16* src, int count, int row0,
                                          int limit, int k, int kb) {
    constexpr int LANES = 32 / SPLIT, STRIDE = wide_stride<SPLIT>();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int q = (lane % LANES) >> 2, c = lane & 3;
    const int kk = kb * 256 + wide_virtual_warp<SPLIT>((int)blockIdx.z, q) * 32 + c * 8;
    for (int r = warp * SPLIT + lane / LANES; r < count; r += WARPS * SPLIT) {
        const bool ok = row0 + r < limit && kk < k;
        cp_async16(stage + r * STRIDE + q * 32 + c * 8, ok ? src + (size_t)(row0 + r) * k + kk : src, ok);
    }
}

// f(r, j, e) for every value of a wide block warp's sums (row group r of
// its GROUPS, tile j, MMA value e).
template <int GROUPS, int TILES, typename F>
__device__ __forceinline__ void each_wide_value(F f) {
#pragma unroll
    for (int r = 0; r < GROUPS; ++r)
#pragma unroll
        for (int j = 0; j < TILES; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) f(r, j, e);
}

// A float of the shared memory of block `rank` of this cluster, at the
// place `local` has in this block's.
__device__ __forceinline__ float load_cluster_shared(const float* local, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    unsigned remote;
    float value;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n"
                 : "=r"(remote)
                 : "r"((unsigned)__cvta_generic_to_shared(local)), "r"(rank));
    // No memory clobber: the value does not change after the cluster_sync
    // ahead of every call, so the loads may be scheduled together.
    asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(value) : "r"(remote));
    return value;
#else
    __trap();
    return 0.0f;
#endif
}

// Every thread of every block of the cluster arrives, then waits for all:
// shared-memory writes before it are visible to every block after it.
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#else
    __trap();
#endif
}

template <int TILES, int SPLIT, typename Epilogue>
__device__ void wide(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                     const unsigned* __restrict__ step, int n, int k, const Epilogue& epilogue) {
    extern __shared__ __align__(16) unsigned char wide_smem[];
    // T: the t_w this block owns; VWARPS: its virtual warps; GROUPS: the
    // row groups of a real warp.
    constexpr int T = 4 / SPLIT, VWARPS = 8 / SPLIT, GROUPS = 4 / SPLIT;
    constexpr int TOKENS = 8 * TILES, STRIDE = wide_stride<SPLIT>(), STAGE = (WIDE_ROWS + TOKENS) * STRIDE;
    __nv_bfloat16* stages = reinterpret_cast<__nv_bfloat16*>(wide_smem);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int virtual_warp = warp % VWARPS, group0 = (warp / VWARPS) * GROUPS;
    const int token0 = (int)blockIdx.x * TOKENS, row0 = (int)blockIdx.y * WIDE_ROWS;
    const int blocks = (k + 255) / 256;
    // Prologue, while the kernel ahead may still run (pdl.cuh): the step
    // (the host wrote it; a cluster past its rows has nothing to do) and the
    // weight halves of the first stages (weights are never written).
    const int rows = (int)step[0];
    if (token0 >= rows) return;
#pragma unroll
    for (int s = 0; s < WIDE_STAGES - 1; ++s)
        if (s < blocks) load_rows<SPLIT>(stages + s * STAGE, w, WIDE_ROWS, row0, n, k, s);
    wait_for_producers();
    let_dependents_launch();
#pragma unroll
    for (int s = 0; s < WIDE_STAGES - 1; ++s) {
        if (s < blocks) load_rows<SPLIT>(stages + s * STAGE + WIDE_ROWS * STRIDE, x, TOKENS, token0, rows, k, s);
        cp_async_commit();
    }
    const int live_tiles = min(TILES, (rows - token0 + 7) / 8);
    float acc[GROUPS][TILES][4];
    each_wide_value<GROUPS, TILES>([&](int r, int j, int e) { acc[r][j][e] = 0.0f; });
    for (int kb = 0; kb < blocks; ++kb) {
        cp_async_wait<WIDE_STAGES - 2>();
        __syncthreads();
        // This warp's virtual warp's chunk of this K block, its row groups.
        const __nv_bfloat16* ws = stages + (kb % WIDE_STAGES) * STAGE + virtual_warp * 32 + 8 * c;
        const __nv_bfloat16* xs = ws + WIDE_ROWS * STRIDE;
        uint4 b[TILES];
#pragma unroll
        for (int j = 0; j < TILES; ++j)
            if (j < live_tiles) b[j] = *reinterpret_cast<const uint4*>(xs + (j * 8 + g) * STRIDE);
#pragma unroll
        for (int r = 0; r < GROUPS; ++r) {
            const int row = (group0 + r) * 16 + g;
            const uint4 lo = *reinterpret_cast<const uint4*>(ws + row * STRIDE);
            const uint4 hi = *reinterpret_cast<const uint4*>(ws + (row + 8) * STRIDE);
#pragma unroll
            for (int j = 0; j < TILES; ++j) {
                if (j < live_tiles) {
                    mma_bf16(acc[r][j], lo.x, hi.x, lo.y, hi.y, b[j].x, b[j].y);
                    mma_bf16(acc[r][j], lo.z, hi.z, lo.w, hi.w, b[j].z, b[j].w);
                }
            }
        }
        // Refill the stage the previous block used (everyone is past it).
        const int next = kb + WIDE_STAGES - 1;
        if (next < blocks) {
            __nv_bfloat16* stage = stages + (next % WIDE_STAGES) * STAGE;
            load_rows<SPLIT>(stage, w, WIDE_ROWS, row0, n, k, next);
            load_rows<SPLIT>(stage + WIDE_ROWS * STRIDE, x, TOKENS, token0, rows, k, next);
        }
        cp_async_commit();
    }
    cp_async_wait<0>();
    __syncthreads();
    // The block's t_w into slots 0..T-1 of the freed stages, each the
    // whole tile: value (r, j, e) of lane l at ((r TILES + j) 4 + e) 32 + l.
    // The warps of virtual warps w + 4 leave their sums there, and those of
    // w add them.
    constexpr int VALUES = 4 * TILES * 4;
    float* slots = reinterpret_cast<float*>(wide_smem);
    auto slot = [&](int t, int r, int j, int e) -> float& {
        return slots[(t * VALUES + ((group0 + r) * TILES + j) * 4 + e) * 32 + lane];
    };
    if (virtual_warp >= T)
        each_wide_value<GROUPS, TILES>([&](int r, int j, int e) { slot(virtual_warp - T, r, j, e) = acc[r][j][e]; });
    __syncthreads();
    if (virtual_warp < T)
        each_wide_value<GROUPS, TILES>([&](int r, int j, int e) { slot(virtual_warp, r, j, e) += acc[r][j][e]; });
    if constexpr (SPLIT == 1)
        __syncthreads();
    else
        cluster_sync();
    // Each block of the cluster sums its share of the tile's outputs and
    // runs the epilogue on them: pair (q, l) = lane l's sums of rows g and
    // g + 8 of row group r for token j * 8 + 2c + p, q = (r * TILES + j) * 2
    // + p; its t_w sit in slot w % T of block w / T.
    auto total = [&](int index) {
        float sum = 0.0f;
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            const float* local = slots + (t % T) * VALUES * 32 + index;
            const float value = SPLIT == 1 ? *local : load_cluster_shared(local, t / T);
            sum = t == 0 ? value : sum + value;
        }
        return sum;
    };
    constexpr int PAIRS = 4 * TILES * 2 * 32;
    for (int pair = (int)blockIdx.z * WARPS * 32 + threadIdx.x; pair < PAIRS; pair += SPLIT * WARPS * 32) {
        const int l = pair & 31, q = pair >> 5, p = q & 1, rj = q >> 1;
        const int r = rj / TILES, j = rj % TILES;
        const int token = token0 + j * 8 + 2 * (l & 3) + p, group = row0 + r * 16;
        if (token < rows && group < n)
            store_late(epilogue, token, group + (l >> 2), total((rj * 4 + p) * 32 + l),
                       total((rj * 4 + p + 2) * 32 + l));
    }
    // No block leaves while another may still read its shared memory.
    if constexpr (SPLIT > 1) cluster_sync();
}

// The cluster of a SPLIT > 1 kernel (sm_90 and later; the host never
// splits below).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define WIDE_CLUSTER(SPLIT) __cluster_dims__(1, 1, SPLIT)
#else
#define WIDE_CLUSTER(SPLIT)
#endif

// The entry points of one tile count and split, with the skinny kernels'
// parameters: wide_{store,swiglu,rope}_t<TILES>[_s<SPLIT>].
#define WIDE(TILES, SPLIT, SUFFIX, CLUSTER)                                                                      \
    extern "C" __global__ void __launch_bounds__(WARPS * 32, 1) CLUSTER                                          \
        wide_store_t##TILES##SUFFIX(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,    \
                                    float* __restrict__ y, const unsigned* __restrict__ step, int n, int k,      \
                                    int accumulate) {                                                            \
        wide<TILES, SPLIT>(x, w, step, n, k, StoreF32{y, n, accumulate});                                        \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(WARPS * 32, 1) CLUSTER                                          \
        wide_swiglu_t##TILES##SUFFIX(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,   \
                                     __nv_bfloat16* __restrict__ out, const unsigned* __restrict__ step, int n,  \
                                     int k) {                                                                    \
        wide<TILES, SPLIT>(x, w, step, n, k, SwiGlu{out, n / 2});                                                \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(WARPS * 32, 1) CLUSTER wide_rope_t##TILES##SUFFIX(              \
        const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w, const unsigned* __restrict__ step, \
        int n, int k, const float* __restrict__ bias, const float* __restrict__ inv_freq,                        \
        const unsigned* __restrict__ table, float* __restrict__ q_out, __nv_bfloat16* __restrict__ k_cache,      \
        __nv_bfloat16* __restrict__ v_cache, int hq, int hk, int d) {                                            \
        wide<TILES, SPLIT>(x, w, step, n, k,                                                                     \
                           RopeAppend{bias, inv_freq, step, table, q_out, k_cache, v_cache, hq, hk, d});         \
    }

// 16-, 32- and 64-token blocks (geometry::wide_grid), K split 1, 2 or 4
// ways (geometry::WIDE_SPLITS).
WIDE(2, 1, , )
WIDE(4, 1, , )
WIDE(8, 1, , )
WIDE(2, 2, _s2, WIDE_CLUSTER(2))
WIDE(4, 2, _s2, WIDE_CLUSTER(2))
WIDE(8, 2, _s2, WIDE_CLUSTER(2))
WIDE(2, 4, _s4, WIDE_CLUSTER(4))
WIDE(4, 4, _s4, WIDE_CLUSTER(4))
WIDE(8, 4, _s4, WIDE_CLUSTER(4))
