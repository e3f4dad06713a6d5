// Attention of a block of query rows over the paged bf16 KV cache, causal
// inside the block (row t sees positions 0..=start+t), on the tensor cores,
// split along the KV length into S splits: split s holds the CHUNK-position
// chunks s, s + S, ... A (kv head, row group) has Z blocks along the KV
// length (Z = S in narrow steps, fewer in wide ones, whose row groups fill
// the GPU), block z taking splits z, z + Z, ... A block's units are the
// (row, query head) pairs of its rows and the GQA group of its KV head, 16
// a warp (the MMA's rows; at most UNITS a block). The block stages each
// chunk of its KV head in shared memory once for all of them (K and V as
// they are, through cp.async, two chunks in flight), and each warp computes
// its units' scores (q rounded to bf16 times K^T), an online softmax per
// unit in f32, and the probabilities (rounded to bf16) times V, and for
// each split writes (max, sum, unnormalized output). The last of the Z
// blocks to finish (a counter, which it resets) merges each unit's partials
// (S <= MAX_SPLITS) in split order into the bf16 output, so no second
// kernel is launched.
//
// Before the block waits for the kernel ahead (pdl.cuh) it stages what of
// its first chunk earlier steps wrote (positions before the step's start:
// the host's block table and finished steps' K and V); the step's own
// positions, which the QKV kernel ahead appends, and q follow the wait.
//
// A unit's result does not depend on the step's width, on the rows of its
// block, on its place in a warp's tile or on Z: S is fixed, a split's
// chunks are walked in order whichever block walks them, an MMA's output
// element is the same sum in every row of its tile, positions past a
// unit's end weigh exactly 0 (their scores are -inf, and a chunk the unit
// sees none of leaves its state as it was), and every other sum runs in a
// fixed order.
#include <cuda_bf16.h>

#define BLOCK_TOKENS 16
#define CHUNK 64
// -infinity without math.h (NVRTC has no standard headers).
#define NEG_INF (-__int_as_float(0x7f800000))
#define WARPS 4       // geometry::ATTENTION_WARPS
#define UNITS 64      // geometry::ATTENTION_BLOCK_UNITS: 16 a warp
#define MAX_SPLITS 32 // geometry::ATTENTION_MAX_SPLITS: one a lane in merge_splits
#define PAD 8         // bf16 values after each staged K or V row: the rows' banks differ
static_assert(UNITS == 16 * WARPS, "a warp's MMA tile holds 16 units");
#define NO_ZERO_FILL 0x7fffffff  // stage_chunk's zero_from when it writes no zeros

// Stages positions [lo, hi) of the chunk at c0 into shared memory (K and V
// rows of D values, D + PAD apart) and zeros at the positions from
// `zero_from` on, through cp.async; the rest is left as it is.
template <int D>
__device__ __forceinline__ void stage_chunk(const __nv_bfloat16* __restrict__ k_cache,
                                            const __nv_bfloat16* __restrict__ v_cache,
                                            const unsigned* __restrict__ table, __nv_bfloat16* ks, __nv_bfloat16* vs,
                                            int c0, int lo, int hi, int zero_from, int kv_head, int hk) {
    constexpr int PARTS = D / 8, TASKS = CHUNK * PARTS, STRIDE = D + PAD;
    for (int task = threadIdx.x; task < TASKS; task += WARPS * 32) {
        const int p = task / PARTS, part = task % PARTS, pos = c0 + p;
        const bool in = pos >= lo && pos < hi;
        if (in || pos >= zero_from) {
            const size_t at =
                in ? (((size_t)table[pos / BLOCK_TOKENS] * BLOCK_TOKENS + pos % BLOCK_TOKENS) * hk + kv_head) * D +
                         part * 8
                   : 0;
            cp_async16(ks + p * STRIDE + part * 8, k_cache + at, in);
            cp_async16(vs + p * STRIDE + part * 8, v_cache + at, in);
        }
    }
}

// Moves (split, c0) to the block's next chunk: the split's next one, else
// the first of the block's next split; false past the block's last.
__device__ __forceinline__ bool next_chunk(int& split, int& c0, int splits, int slots, int block_visible) {
    c0 += splits * CHUNK;
    if (c0 < block_visible) return true;
    split += slots;
    c0 = split * CHUNK;
    return split < splits && c0 < block_visible;
}

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&v);
}

// Four 8x8 bf16 matrices from shared memory, transposed: lanes 8i..8i+7
// give the row addresses of matrix i, and register i holds the lane's
// fragment of it.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const __nv_bfloat16* p) {
    const unsigned at = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(at));
}

// The last block's merge of its units' split partials into the bf16
// output, each phase a batch of independent loads: every (unit, split)
// max and sum into shared memory (a thread each, four at a time), then each unit's split
// weights exp(m_s - m) and sum sum_s l_s w_s (a warp each, from shared
// memory), then every (unit, output pair) sum_s o_s w_s / sum (a thread
// each, two pairs and eight splits of loads at a time). Sums run in split
// order. Shared memory: `weights` (UNITS x MAX_SPLITS maxima, then
// weights), `sums` (the same for the splits' sums) and `totals` (UNITS).
template <int D>
__device__ __forceinline__ void merge_splits(const float* __restrict__ partial, __nv_bfloat16* __restrict__ out,
                                             float* weights, float* sums, float* totals, int units, int group, int t0,
                                             int start, int kv_head, int hq, int splits) {
    constexpr int PAIRS = D / 2, SPLIT_TASKS = 4, TASKS = 2, BATCH = 8;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Unit u: row t0 + u / group, query head kv_head * group + u % group;
    // its partials sit at partial + at(u) * splits * (D + 2).
    auto at = [&](int u) { return ((size_t)(t0 + u / group) * hq + kv_head * group + u % group); };
    auto active = [&](int u) { return min(splits, (start + t0 + u / group + CHUNK) / CHUNK); };
    for (int first = threadIdx.x; first < units * MAX_SPLITS; first += SPLIT_TASKS * WARPS * 32) {
        float2 ml[SPLIT_TASKS];
#pragma unroll
        for (int j = 0; j < SPLIT_TASKS; ++j) {
            const int i = first + j * WARPS * 32, u = i / MAX_SPLITS, split = i % MAX_SPLITS;
            const float* mine = partial + (at(u) * splits + split) * (D + 2);
            ml[j] = i < units * MAX_SPLITS && split < active(u) ? __ldcg(reinterpret_cast<const float2*>(mine))
                                                                 : make_float2(NEG_INF, 0.0f);
        }
#pragma unroll
        for (int j = 0; j < SPLIT_TASKS; ++j) {
            const int i = first + j * WARPS * 32;
            if (i < units * MAX_SPLITS) {
                weights[i] = ml[j].x;
                sums[i] = ml[j].y;
            }
        }
    }
    __syncthreads();
    for (int u = warp; u < units; u += WARPS) {
        float* w = weights + u * MAX_SPLITS;
        const float mine = w[lane];
        float m = mine;
        for (int offset = 16; offset > 0; offset >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
        __syncwarp();
        w[lane] = mine == NEG_INF ? 0.0f : expf(mine - m);
        __syncwarp();
        if (lane == 0) {
            float l = 0.0f;
            for (int split = 0; split < active(u); ++split) l = fmaf(sums[u * MAX_SPLITS + split], w[split], l);
            totals[u] = l;
        }
    }
    __syncthreads();
    for (int first = threadIdx.x; first < units * PAIRS; first += TASKS * WARPS * 32) {
        float2 o[TASKS];
        int most = 0;
#pragma unroll
        for (int j = 0; j < TASKS; ++j) {
            o[j] = make_float2(0.0f, 0.0f);
            const int task = first + j * WARPS * 32;
            if (task < units * PAIRS) most = max(most, active(task / PAIRS));
        }
        for (int s0 = 0; s0 < most; s0 += BATCH) {
            float2 v[TASKS][BATCH];
#pragma unroll
            for (int j = 0; j < TASKS; ++j) {
                const int task = first + j * WARPS * 32, u = task / PAIRS, pair = task % PAIRS;
                const bool live = task < units * PAIRS;
                const int n = live ? active(u) : 0;
                const float* base = partial + at(live ? u : 0) * splits * (D + 2) + 2 + 2 * pair;
#pragma unroll
                for (int b = 0; b < BATCH; ++b)
                    v[j][b] = s0 + b < n ? __ldcg(reinterpret_cast<const float2*>(base + (s0 + b) * (D + 2)))
                                         : make_float2(0.0f, 0.0f);
            }
#pragma unroll
            for (int j = 0; j < TASKS; ++j) {
                const int task = first + j * WARPS * 32, u = task / PAIRS;
                if (task >= units * PAIRS) continue;
                const int n = active(u);
#pragma unroll
                for (int b = 0; b < BATCH; ++b) {
                    if (s0 + b >= n) break;
                    const float w = weights[u * MAX_SPLITS + s0 + b];
                    o[j].x = fmaf(v[j][b].x, w, o[j].x);
                    o[j].y = fmaf(v[j][b].y, w, o[j].y);
                }
            }
        }
#pragma unroll
        for (int j = 0; j < TASKS; ++j) {
            const int task = first + j * WARPS * 32, u = task / PAIRS, pair = task % PAIRS;
            if (task < units * PAIRS) {
                const float l = totals[u];
                *reinterpret_cast<__nv_bfloat162*>(out + at(u) * D + 2 * pair) =
                    __floats2bfloat162_rn(o[j].x / l, o[j].y / l);
            }
        }
    }
}

// One block of the attention kernels below (head dim D). Dynamic shared
// memory: two buffers of a chunk's K and V (CHUNK rows of D + PAD bf16
// values each), which the merge reuses (geometry::attention_shared_bytes).
template <int D>
__device__ __forceinline__ void
attention_block(const float* __restrict__ q,                // (rows, hq*D), RoPE applied
                const __nv_bfloat16* __restrict__ k_cache,  // (blocks, 16, hk, D)
                const __nv_bfloat16* __restrict__ v_cache,  // (blocks, 16, hk, D)
                const unsigned* __restrict__ step,          // [n, start]
                const unsigned* __restrict__ table,         // block table
                float* __restrict__ partial,                // (rows, hq, S = splits, D + 2)
                unsigned* __restrict__ counters,            // (row groups, hk), zero between launches
                __nv_bfloat16* __restrict__ out,            // (rows, hq*D)
                int hq, int hk, int rows_per_block, int splits, float scale) {
    constexpr int STRIDE = D + PAD, BUFFER = 2 * CHUNK * STRIDE;
    constexpr int KSTEPS = D / 16, PTILES = CHUNK / 8, DPART = D < 32 ? D : 32;
    extern __shared__ __align__(16) unsigned char smem[];
    __nv_bfloat16* buffers = reinterpret_cast<__nv_bfloat16*>(smem);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int kv_head = blockIdx.x, group = hq / hk, slot = blockIdx.z, slots = gridDim.z;
    const int n = (int)step[0], start = (int)step[1];
    const int t0 = blockIdx.y * rows_per_block;
    // Rows past the step's count are never read (the products mask them).
    if (t0 >= n) return;
    const int units = min(rows_per_block, n - t0) * group;
    const int block_visible = start + t0 + units / group;
    // This lane's units: rows g and g + 8 of its warp's tile.
    int visible[2];
    size_t unit[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int u = warp * 16 + g + 8 * i, t = t0 + u / group;
        unit[i] = (size_t)t * hq + kv_head * group + u % group;
        visible[i] = u < units ? start + t + 1 : 0;
    }
    const bool warp_live = warp * 16 < units;
    int split = slot, c0 = slot * CHUNK;
    bool have = c0 < block_visible;
    if (have)
        stage_chunk<D>(k_cache, v_cache, table, buffers, buffers + CHUNK * STRIDE, c0, 0, min(start, block_visible),
                       block_visible, kv_head, hk);
    wait_for_producers();
    let_dependents_launch();
    if (have && c0 + CHUNK > start)
        stage_chunk<D>(k_cache, v_cache, table, buffers, buffers + CHUNK * STRIDE, c0, start, block_visible,
                       NO_ZERO_FILL, kv_head, hk);
    cp_async_commit();
    int next_split = split, next_c0 = c0;
    bool has_next = have && next_chunk(next_split, next_c0, splits, slots, block_visible);
    if (has_next)
        stage_chunk<D>(k_cache, v_cache, table, buffers + BUFFER, buffers + BUFFER + CHUNK * STRIDE, next_c0, 0,
                       block_visible, block_visible, kv_head, hk);
    cp_async_commit();
    // q as the MMA's A fragments, rounded to bf16.
    unsigned qa[KSTEPS][4];
#pragma unroll
    for (int kk = 0; kk < KSTEPS; ++kk)
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                const float2 v = visible[i] > 0
                                     ? *reinterpret_cast<const float2*>(q + unit[i] * D + kk * 16 + 2 * c + 8 * half)
                                     : make_float2(0.0f, 0.0f);
                qa[kk][i + 2 * half] = pack_bf16(v.x, v.y);
            }
    // The online softmax of rows g (i = 0) and g + 8 (i = 1): max, sum and
    // output (o[j][2i], o[j][2i + 1]: dims 8j + 2c and the next).
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f}, o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    for (int buffer = 0; have; buffer ^= 1) {
        cp_async_wait<1>();
        __syncthreads();
        const __nv_bfloat16* ks = buffers + buffer * BUFFER;
        const __nv_bfloat16* vs = ks + CHUNK * STRIDE;
        if (warp_live) {
            // Scores: 8 tiles of 8 positions, the dot product in K steps of 16.
            float s[PTILES][4];
#pragma unroll
            for (int j = 0; j < PTILES; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KSTEPS; ++kk)
#pragma unroll
                for (int j = 0; j < PTILES; ++j) {
                    const __nv_bfloat16* kp = ks + (j * 8 + g) * STRIDE + kk * 16 + 2 * c;
                    mma_bf16(s[j], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3],
                             *reinterpret_cast<const unsigned*>(kp), *reinterpret_cast<const unsigned*>(kp + 8));
                }
            float chunk_max[2] = {NEG_INF, NEG_INF};
#pragma unroll
            for (int j = 0; j < PTILES; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int i = e >> 1, pos = c0 + j * 8 + 2 * c + (e & 1);
                    s[j][e] = pos < visible[i] ? s[j][e] * scale : NEG_INF;
                    chunk_max[i] = fmaxf(chunk_max[i], s[j][e]);
                }
            float correction[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                chunk_max[i] = fmaxf(chunk_max[i], __shfl_xor_sync(0xffffffffu, chunk_max[i], 1));
                chunk_max[i] = fmaxf(chunk_max[i], __shfl_xor_sync(0xffffffffu, chunk_max[i], 2));
                const float m_new = fmaxf(m[i], chunk_max[i]);
                correction[i] = m_new == NEG_INF ? 1.0f : __expf(m[i] - m_new);
                m[i] = m_new;
            }
#pragma unroll
            for (int j = 0; j < PTILES; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int i = e >> 1;
                    s[j][e] = s[j][e] == NEG_INF ? 0.0f : __expf(s[j][e] - m[i]);
                    sum[i] += s[j][e];
                }
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                sum[i] += __shfl_xor_sync(0xffffffffu, sum[i], 1);
                sum[i] += __shfl_xor_sync(0xffffffffu, sum[i], 2);
                l[i] = l[i] * correction[i] + sum[i];
            }
            // Probabilities times V, DPART dims at a time: the C fragments of
            // two score tiles are the A fragment of 16 positions.
            unsigned pa[CHUNK / 16][4];
#pragma unroll
            for (int kk = 0; kk < CHUNK / 16; ++kk) {
                pa[kk][0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
                pa[kk][1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
                pa[kk][2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                pa[kk][3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
            }
#pragma unroll
            for (int d0 = 0; d0 < D; d0 += DPART) {
                float acc[DPART / 8][4];
#pragma unroll
                for (int j = 0; j < DPART / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
#pragma unroll
                for (int kk = 0; kk < CHUNK / 16; ++kk)
#pragma unroll
                    for (int dp = 0; dp < DPART / 16; ++dp) {
                        unsigned b[4];
                        ldmatrix_x4_trans(b, vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * STRIDE + d0 +
                                                 dp * 16 + (lane >> 4) * 8);
                        mma_bf16(acc[2 * dp], pa[kk][0], pa[kk][1], pa[kk][2], pa[kk][3], b[0], b[1]);
                        mma_bf16(acc[2 * dp + 1], pa[kk][0], pa[kk][1], pa[kk][2], pa[kk][3], b[2], b[3]);
                    }
#pragma unroll
                for (int j = 0; j < DPART / 8; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        o[d0 / 8 + j][e] = o[d0 / 8 + j][e] * correction[e >> 1] + acc[j][e];
            }
        }
        const bool split_ends = !has_next || next_split != split;
        if (split_ends && warp_live) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                // A split with no position of this unit writes nothing (the
                // merge reads only the splits that hold its positions).
                if (split * CHUNK < visible[i]) {
                    float* mine = partial + (unit[i] * splits + split) * (D + 2);
                    if (c == 0) {
                        mine[0] = m[i];
                        mine[1] = l[i];
                    }
#pragma unroll
                    for (int j = 0; j < D / 8; ++j)
                        *reinterpret_cast<float2*>(mine + 2 + j * 8 + 2 * c) = make_float2(o[j][2 * i], o[j][2 * i + 1]);
                }
                m[i] = NEG_INF;
                l[i] = 0.0f;
            }
#pragma unroll
            for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
        }
        // Everyone is past this buffer: it takes the chunk after next.
        __syncthreads();
        split = next_split;
        c0 = next_c0;
        have = has_next;
        has_next = have && next_chunk(next_split, next_c0, splits, slots, block_visible);
        if (has_next)
            stage_chunk<D>(k_cache, v_cache, table, buffers + buffer * BUFFER,
                           buffers + buffer * BUFFER + CHUNK * STRIDE, next_c0, 0, block_visible, block_visible,
                           kv_head, hk);
        cp_async_commit();
    }
    cp_async_wait<0>();
    __threadfence();
    __syncthreads();
    unsigned* counter = counters + (size_t)blockIdx.y * hk + kv_head;
    const bool last = __syncthreads_or(threadIdx.x == 0 && atomicAdd(counter, 1u) == (unsigned)slots - 1);
    if (!last) return;
    __threadfence();
    float* weights = reinterpret_cast<float*>(smem);
    merge_splits<D>(partial, out, weights, weights + UNITS * MAX_SPLITS, weights + 2 * UNITS * MAX_SPLITS, units,
                    group, t0, start, kv_head, hq, splits);
    if (threadIdx.x == 0) *counter = 0u;
}

// One kernel a head dimension (geometry::ATTENTION_HEAD_DIMS):
// attention_d<D>.
#define ATTENTION(D)                                                                                                 \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) attention_d##D(                                         \
        const float* __restrict__ q, const __nv_bfloat16* __restrict__ k_cache,                                      \
        const __nv_bfloat16* __restrict__ v_cache, const unsigned* __restrict__ step,                                \
        const unsigned* __restrict__ table, float* __restrict__ partial, unsigned* __restrict__ counters,            \
        __nv_bfloat16* __restrict__ out, int hq, int hk, int rows_per_block, int splits, float scale) {              \
        attention_block<D>(q, k_cache, v_cache, step, table, partial, counters, out, hq, hk, rows_per_block, splits, \
                           scale);                                                                                   \
    }

ATTENTION(16)
ATTENTION(32)
ATTENTION(64)
ATTENTION(128)
