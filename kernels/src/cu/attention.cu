// Attention of a block of query rows over the paged bf16 KV cache, causal
// inside the block (row t sees positions 0..=start+t), split along the KV
// length into S splits: split s holds the CHUNK-position chunks s, s + S,
// ... A (kv head, row group) has Z blocks along the KV length (Z = S in
// narrow steps, fewer in wide ones, whose row groups fill the GPU), block z
// taking splits z, z + Z, ... A block stages each chunk of its KV head in
// shared memory once (K transposed, V as is) for all the query heads of
// the GQA group and the R rows of the row group, one warp a (row, query
// head) unit, and for each split writes (max, sum, unnormalized output) of
// an online softmax over its chunks. The last of the Z blocks to finish (a
// counter, which it resets) merges each unit's partials (S <= MAX_SPLITS)
// in split order into the bf16 output, so no second kernel is launched; the
// merge's loads go out a batch of splits at a time.
//
// Before the block waits for the kernel ahead (pdl.cuh) it stages what of
// its first chunk earlier steps wrote (positions before the step's start:
// the host's block table and finished steps' K and V); the step's own
// positions, which the QKV kernel ahead appends, and q (copied with
// cp.async, alongside) follow the wait.
//
// A row's result does not depend on the step's width, on R or on Z: S is
// fixed, a split's chunks are walked in order whichever block walks them, a
// warp iterates exactly the chunks its row sees, positions past the row's
// end weigh exactly 0 (their scores are -inf), and every sum runs in a
// fixed order.
#include <cuda_bf16.h>

#define BLOCK_TOKENS 16
#define CHUNK 64
// -infinity without math.h (NVRTC has no standard headers).
#define NEG_INF (-__int_as_float(0x7f800000))
#define MAX_WARPS 32             // geometry::ATTENTION_MAX_WARPS
#define FAST_MAX_WARPS 16        // geometry::ATTENTION_FAST_MAX_WARPS
#define FAST_MAX_REGISTERS 80    // 16 warps launch; two blocks of 12 fit an SM's 64 Ki registers
#define MAX_SPLITS 32            // geometry::ATTENTION_MAX_SPLITS: one a lane in combine_splits
#define MAX_UNIT_PAIRS 4         // MAX_HEAD_DIM / 64: pairs of output values a lane owns
#define STAGE_BATCH 4            // staging tasks a thread loads before it stores them
#define NO_ZERO_FILL 0x7fffffff  // stage_chunk's zero_from when it writes no zeros
static_assert(CHUNK >= 2 * MAX_SPLITS, "combine_splits keeps a weight and a sum a split in a warp's probability row");

// Stages positions [lo, hi) of the chunk at c0 into shared memory (task:
// position p, 8 values `part`; V as is, K transposed) and zeros at the
// positions from `zero_from` on; the rest is left as it is. Loads of
// STAGE_BATCH tasks go out before their stores.
__device__ __forceinline__ void stage_chunk(const __nv_bfloat16* __restrict__ k_cache,
                                            const __nv_bfloat16* __restrict__ v_cache,
                                            const unsigned* __restrict__ table, __nv_bfloat16* kt, __nv_bfloat16* vs,
                                            int c0, int lo, int hi, int zero_from, int kv_head, int hk, int d) {
    const int parts = d / 8, tasks = CHUNK * parts;
    for (int first = threadIdx.x; first < tasks; first += STAGE_BATCH * blockDim.x) {
        uint4 kv[STAGE_BATCH], vv[STAGE_BATCH];
#pragma unroll
        for (int b = 0; b < STAGE_BATCH; ++b) {
            const int task = first + b * blockDim.x, p = task % CHUNK, pos = c0 + p;
            kv[b] = vv[b] = make_uint4(0u, 0u, 0u, 0u);
            if (task < tasks && pos >= lo && pos < hi) {
                const size_t entry = (size_t)table[pos / BLOCK_TOKENS] * BLOCK_TOKENS + pos % BLOCK_TOKENS;
                const size_t at = (entry * hk + kv_head) * d + (task / CHUNK) * 8;
                kv[b] = __ldg(reinterpret_cast<const uint4*>(k_cache + at));
                vv[b] = __ldg(reinterpret_cast<const uint4*>(v_cache + at));
            }
        }
#pragma unroll
        for (int b = 0; b < STAGE_BATCH; ++b) {
            const int task = first + b * blockDim.x, p = task % CHUNK, part = task / CHUNK, pos = c0 + p;
            if (task < tasks && ((pos >= lo && pos < hi) || pos >= zero_from)) {
                *reinterpret_cast<uint4*>(vs + p * d + part * 8) = vv[b];
                const __nv_bfloat16* kvals = reinterpret_cast<const __nv_bfloat16*>(&kv[b]);
#pragma unroll
                for (int j = 0; j < 8; ++j) kt[(part * 8 + j) * CHUNK + p] = kvals[j];
            }
        }
    }
}

// Merges the S partials of one unit in split order into `dst` (a warp).
// Lane s loads split s's max and sum, so the maxima and sums of all splits
// take one round trip; the splits' weights go through `weights` (the
// warp's probability row) to every lane, and each lane loads its output
// pairs (2 lane + 64 i, as the unit's warp wrote them) of BATCH splits
// before it adds any. Every sum runs in split order.
template <int PAIRS>
__device__ void combine_splits(const float* __restrict__ base, float* weights, __nv_bfloat16* __restrict__ dst,
                               int d, int splits, int visible) {
    constexpr int BATCH = 8 / PAIRS;
    const int lane = threadIdx.x & 31, stride = d + 2;
    const int active = min(splits, (visible + CHUNK - 1) / CHUNK);
    const float my_m = lane < active ? __ldcg(base + lane * stride) : NEG_INF;
    const float my_l = lane < active ? __ldcg(base + lane * stride + 1) : 0.0f;
    float m = my_m;
    for (int offset = 16; offset > 0; offset >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    weights[lane] = my_m == NEG_INF ? 0.0f : expf(my_m - m);
    weights[32 + lane] = my_l;
    __syncwarp();
    float l = 0.0f, o[PAIRS][2];
#pragma unroll
    for (int i = 0; i < PAIRS; ++i) o[i][0] = o[i][1] = 0.0f;
    for (int s = 0; s < active; ++s) l = fmaf(weights[32 + s], weights[s], l);
    for (int s0 = 0; s0 < active; s0 += BATCH) {
        float2 v[BATCH][PAIRS];
#pragma unroll
        for (int j = 0; j < BATCH; ++j)
#pragma unroll
            for (int i = 0; i < PAIRS; ++i) {
                const int e = 2 * lane + 64 * i;
                v[j][i] = s0 + j < active && e < d
                              ? __ldcg(reinterpret_cast<const float2*>(base + (s0 + j) * stride + 2 + e))
                              : make_float2(0.0f, 0.0f);
            }
#pragma unroll
        for (int j = 0; j < BATCH; ++j) {
            if (s0 + j >= active) break;
            const float w = weights[s0 + j];
#pragma unroll
            for (int i = 0; i < PAIRS; ++i) {
                o[i][0] = fmaf(v[j][i].x, w, o[i][0]);
                o[i][1] = fmaf(v[j][i].y, w, o[i][1]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < PAIRS; ++i) {
        const int e = 2 * lane + 64 * i;
        if (e < d) *reinterpret_cast<__nv_bfloat162*>(dst + e) = __floats2bfloat162_rn(o[i][0] / l, o[i][1] / l);
    }
}

// One block of the attention kernels below. Dynamic shared memory: K^T (d,
// CHUNK) and V (CHUNK, d) bf16, then per warp its query row (d floats) and
// its chunk's probabilities (CHUNK).
__device__ __forceinline__ void
attention_block(const float* __restrict__ q,                // (rows, hq*d), RoPE applied
                const __nv_bfloat16* __restrict__ k_cache,  // (blocks, 16, hk, d)
                const __nv_bfloat16* __restrict__ v_cache,  // (blocks, 16, hk, d)
                const unsigned* __restrict__ step,          // [n, start]
                const unsigned* __restrict__ table,         // block table
                float* __restrict__ partial,                // (rows, hq, S = splits, d + 2)
                unsigned* __restrict__ counters,            // (row groups, hk), zero between launches
                __nv_bfloat16* __restrict__ out,            // (rows, hq*d)
                int hq, int hk, int d, int rows_per_block, int splits, float scale) {
    extern __shared__ __align__(16) unsigned char smem[];
    __nv_bfloat16* kt = reinterpret_cast<__nv_bfloat16*>(smem);
    __nv_bfloat16* vs = kt + d * CHUNK;
    float* qs = reinterpret_cast<float*>(vs + CHUNK * d);
    const int warps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* my_q = qs + warp * d;
    float* my_probs = qs + warps * d + warp * CHUNK;
    const int kv_head = blockIdx.x, group = hq / hk, slot = blockIdx.z, slots = gridDim.z;
    const int n = (int)step[0], start = (int)step[1];
    const int t0 = blockIdx.y * rows_per_block;
    // Rows past the step's count are never read (the products mask them).
    if (t0 >= n) return;
    // This warp's unit: row t, query head h.
    const int t = t0 + warp / group, h = kv_head * group + warp % group;
    const bool live = t < n;
    const int visible = live ? start + t + 1 : 0;
    const int last_row = min(t0 + rows_per_block, n) - 1;
    const int block_visible = start + last_row + 1;
    const int first_chunk = slot * CHUNK;
    if (first_chunk < block_visible)
        stage_chunk(k_cache, v_cache, table, kt, vs, first_chunk, 0, min(start, block_visible), block_visible, kv_head,
                    hk, d);
    wait_for_producers();
    let_dependents_launch();
    // q is copied to shared memory asynchronously while the step's own
    // positions are staged, so the two round trips overlap.
    if (live)
        for (int part = lane; part < d / 4; part += 32)
            cp_async16(my_q + 4 * part, q + (size_t)t * hq * d + h * d + 4 * part, true);
    cp_async_commit();
    if (first_chunk < block_visible && first_chunk + CHUNK > start)
        stage_chunk(k_cache, v_cache, table, kt, vs, first_chunk, start, block_visible, NO_ZERO_FILL, kv_head, hk, d);
    cp_async_wait<0>();
    for (int split = slot; split < splits && split * CHUNK < block_visible; split += slots) {
        // Output values 2 lane + 64 i and the next (bf16 pairs of V).
        float m = NEG_INF, l = 0.0f, o[MAX_UNIT_PAIRS][2];
#pragma unroll
        for (int i = 0; i < MAX_UNIT_PAIRS; ++i) o[i][0] = o[i][1] = 0.0f;
        for (int c0 = split * CHUNK; c0 < block_visible; c0 += splits * CHUNK) {
            // The first chunk was staged around the wait; later ones replace it
            // (positions past the block's rows are zeros).
            if (c0 != first_chunk) {
                __syncthreads();
                stage_chunk(k_cache, v_cache, table, kt, vs, c0, 0, block_visible, block_visible, kv_head, hk, d);
            }
            __syncthreads();
            if (c0 >= visible) continue;  // warp-uniform: this row sees none of the chunk
            // Scores of positions 2 lane and 2 lane + 1: the dot products over
            // each half of K in order, then the halves added.
            const int p0 = c0 + 2 * lane, half = d / 2;
            float s0a = 0.0f, s1a = 0.0f, s0b = 0.0f, s1b = 0.0f;
            for (int e = 0; e < half; ++e) {
                const float2 ka =
                    __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(kt + e * CHUNK + 2 * lane));
                const float2 kb =
                    __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(kt + (e + half) * CHUNK + 2 * lane));
                s0a = fmaf(my_q[e], ka.x, s0a);
                s1a = fmaf(my_q[e], ka.y, s1a);
                s0b = fmaf(my_q[e + half], kb.x, s0b);
                s1b = fmaf(my_q[e + half], kb.y, s1b);
            }
            const float s0 = p0 < visible ? (s0a + s0b) * scale : NEG_INF;
            const float s1 = p0 + 1 < visible ? (s1a + s1b) * scale : NEG_INF;
            float chunk_max = fmaxf(s0, s1);
            for (int offset = 16; offset > 0; offset >>= 1)
                chunk_max = fmaxf(chunk_max, __shfl_xor_sync(0xffffffffu, chunk_max, offset));
            const float m_new = fmaxf(m, chunk_max);
            const float correction = expf(m - m_new);
            const float e0 = expf(s0 - m_new), e1 = expf(s1 - m_new);
            my_probs[2 * lane] = e0;
            my_probs[2 * lane + 1] = e1;
            float sum = e0 + e1;
            for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
            l = l * correction + sum;
            __syncwarp();
            // Probabilities times V: four chains over the positions p % 4, added
            // pairwise, onto the corrected output.
#pragma unroll
            for (int i = 0; i < MAX_UNIT_PAIRS; ++i) {
                const int e = 2 * lane + 64 * i;
                if (e < d) {
                    float acc[4][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}, {0.0f, 0.0f}, {0.0f, 0.0f}};
                    for (int p = 0; p < CHUNK; p += 4) {
#pragma unroll
                        for (int c = 0; c < 4; ++c) {
                            const float2 v =
                                __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(vs + (p + c) * d + e));
                            acc[c][0] = fmaf(my_probs[p + c], v.x, acc[c][0]);
                            acc[c][1] = fmaf(my_probs[p + c], v.y, acc[c][1]);
                        }
                    }
#pragma unroll
                    for (int x = 0; x < 2; ++x)
                        o[i][x] = o[i][x] * correction + ((acc[0][x] + acc[1][x]) + (acc[2][x] + acc[3][x]));
                }
            }
            m = m_new;
            __syncwarp();
        }
        if (live) {
            float* mine = partial + (((size_t)t * hq + h) * splits + split) * (d + 2);
            // A split with no chunk of this row writes nothing (the merge reads
            // only the splits that hold its positions).
            if (split * CHUNK < visible) {
                if (lane == 0) {
                    mine[0] = m;
                    mine[1] = l;
                }
#pragma unroll
                for (int i = 0; i < MAX_UNIT_PAIRS; ++i) {
                    const int e = 2 * lane + 64 * i;
                    if (e < d) {
                        mine[2 + e] = o[i][0];
                        mine[3 + e] = o[i][1];
                    }
                }
            }
        }
    }
    __threadfence();
    __syncthreads();
    unsigned* counter = counters + (size_t)blockIdx.y * hk + kv_head;
    const bool last = __syncthreads_or(threadIdx.x == 0 && atomicAdd(counter, 1u) == (unsigned)slots - 1);
    if (!last) return;
    __threadfence();
    if (live) {
        const float* base = partial + ((size_t)t * hq + h) * splits * (d + 2);
        __nv_bfloat16* dst = out + (size_t)t * hq * d + h * d;
        if (d <= 64)
            combine_splits<1>(base, my_probs, dst, d, splits, visible);
        else if (d <= 128)
            combine_splits<2>(base, my_probs, dst, d, splits, visible);
        else
            combine_splits<4>(base, my_probs, dst, d, splits, visible);
    }
    if (threadIdx.x == 0) *counter = 0u;
}

#define ATTENTION_PARAMS                                                                                              \
    const float *__restrict__ q, const __nv_bfloat16 *__restrict__ k_cache,                                           \
        const __nv_bfloat16 *__restrict__ v_cache, const unsigned *__restrict__ step,                                 \
        const unsigned *__restrict__ table, float *__restrict__ partial, unsigned *__restrict__ counters,             \
        __nv_bfloat16 *__restrict__ out, int hq, int hk, int d, int rows_per_block, int splits, float scale
#define ATTENTION_ARGS q, k_cache, v_cache, step, table, partial, counters, out, hq, hk, d, rows_per_block, splits, scale

// Blocks of up to FAST_MAX_WARPS warps: at most FAST_MAX_REGISTERS a thread
// (none spilled), so such blocks launch and two of 12 warps (a step of 32
// rows and more at a GQA group of 3) share an SM.
extern "C" __global__ void __maxnreg__(FAST_MAX_REGISTERS) attention(ATTENTION_PARAMS) {
    attention_block(ATTENTION_ARGS);
}

// Blocks of up to MAX_WARPS warps (GQA groups of more than FAST_MAX_WARPS
// query heads): 64 registers a thread, a few spilled.
extern "C" __global__ void __launch_bounds__(MAX_WARPS * 32) attention_large_group(ATTENTION_PARAMS) {
    attention_block(ATTENTION_ARGS);
}
