// Attention of a block of query rows over the paged bf16 KV cache, causal
// inside the block (row t sees positions 0..=start+t), on the tensor cores,
// split along the KV length into S splits: split s holds the CHUNK-position
// chunks s, s + S, ... The step's (row, query head) units of each KV head,
// row-major over the rows and the heads of the KV head's GQA group, are cut
// into tiles of up to 16 (one MMA tile's rows; in steps of up to 64 rows
// the GQA groups of a few rows, for more blocks); a (KV head, tile) has Z
// blocks
// along the KV length (Z = S in narrow steps, fewer in wide ones, whose
// tiles fill the GPU), block z taking splits z, z + Z, ... A block stages
// each chunk of its KV head in shared memory once (K and V as they are,
// through cp.async, two chunks in flight); its 4 warps share the chunk's
// work (attention_block), computing q (rounded to bf16) times K^T, an
// online softmax per unit in f32, and the probabilities (rounded to bf16)
// times V, and for each split write (max, sum, unnormalized output). The
// last of the Z blocks to finish (a counter, which it resets) merges each
// unit's partials (S <= MAX_SPLITS) in split order into the bf16 output,
// so no second kernel is launched.
//
// Before the block waits for the kernel ahead (pdl.cuh) it stages what of
// its first chunk earlier steps wrote (positions before the step's start:
// the host's block table and finished steps' K and V); the step's own
// positions, which the QKV kernel ahead appends, and q follow the wait.
//
// A unit's result does not depend on the step's width, on its tile's other
// units, on its place in the tile or on Z: S is fixed, a split's chunks are
// walked in order whichever block walks them, an MMA's output element is
// the same sum in every row of its tile, positions past a unit's end weigh
// exactly 0 (their scores are -inf, and a chunk the unit sees none of
// leaves its state as it was), and every other sum runs in a fixed order.
#include <cuda_bf16.h>

#define BLOCK_TOKENS 16
#define CHUNK 64
// -infinity without math.h (NVRTC has no standard headers).
#define NEG_INF (-__int_as_float(0x7f800000))
#define WARPS 4       // geometry::ATTENTION_WARPS
#define UNITS 16      // geometry::ATTENTION_BLOCK_UNITS: one MMA tile's rows
#define MAX_SPLITS 32 // geometry::ATTENTION_MAX_SPLITS: one a lane in merge_splits
#define PAD 8         // bf16 values after each staged K or V row: the rows' banks differ
static_assert(UNITS == 16, "a block's units are the rows of one MMA tile");
static_assert(CHUNK == 16 * WARPS, "warp w scores positions 16w..16w+15 of a chunk");
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

// Two or four 8x8 bf16 matrices from shared memory, transposed: lanes
// 8i..8i+7 give the row addresses of matrix i, and register i holds the
// lane's fragment of it.
__device__ __forceinline__ void ldmatrix_x2_trans(unsigned (&r)[2], const __nv_bfloat16* p) {
    const unsigned at = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(at));
}

__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const __nv_bfloat16* p) {
    const unsigned at = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(at));
}

// The last block's merge of its units' split partials into the bf16
// output, each phase a batch of independent loads: every (unit, split)
// max and sum into shared memory (a thread each, four at a time); each
// unit's split weights exp(m_s - m) (a warp a unit); each unit's sum
// sum_s l_s w_s (a thread a unit); then every (unit, output pair)
// sum_s o_s w_s / sum (a thread each, two pairs and sixteen splits of
// loads at a time). Sums run in split order. Shared memory: `weights`
// (UNITS rows of MERGE_STRIDE: maxima, then weights), `sums` (the same for
// the splits' sums) and `totals` (UNITS).
#define MERGE_STRIDE (MAX_SPLITS + 1)  // a unit's row of splits; the units' rows start in distinct banks
template <int D>
__device__ __forceinline__ void merge_splits(const float* __restrict__ partial, __nv_bfloat16* __restrict__ out,
                                             float* weights, float* sums, float* totals, int units, int group, int u0,
                                             int start, int kv_head, int hq, int splits) {
    constexpr int PAIRS = D / 2, SPLIT_TASKS = 4, TASKS = 2, BATCH = 16;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    // Unit u: row (u0 + u) / group, query head kv_head * group + (u0 + u) %
    // group; its partials sit at partial + at(u) * splits * (D + 2).
    auto at = [&](int u) { return ((size_t)((u0 + u) / group) * hq + kv_head * group + (u0 + u) % group); };
    auto active = [&](int u) { return min(splits, (start + (u0 + u) / group + CHUNK) / CHUNK); };
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
            const int i = first + j * WARPS * 32, at_split = i / MAX_SPLITS * MERGE_STRIDE + i % MAX_SPLITS;
            if (i < units * MAX_SPLITS) {
                weights[at_split] = ml[j].x;
                sums[at_split] = ml[j].y;
            }
        }
    }
    __syncthreads();
    for (int u = warp; u < units; u += WARPS) {
        float* w = weights + u * MERGE_STRIDE;
        const float mine = w[lane];
        float m = mine;
        for (int offset = 16; offset > 0; offset >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
        w[lane] = mine == NEG_INF ? 0.0f : expf(mine - m);
    }
    __syncthreads();
    for (int u = threadIdx.x; u < units; u += WARPS * 32) {
        float l = 0.0f;
        for (int split = 0; split < active(u); ++split)
            l = fmaf(sums[u * MERGE_STRIDE + split], weights[u * MERGE_STRIDE + split], l);
        totals[u] = l;
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
                    const float w = weights[u * MERGE_STRIDE + s0 + b];
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

// One block of the attention kernels below (head dim D): up to 16 units
// (one MMA tile's rows) of one KV head, its 4 warps splitting each chunk's work:
// warp w computes the scores of the chunk's positions 16w..16w+15, the
// warps meet (shared memory) for each unit's chunk maximum and for the
// probabilities, then warp w computes P V for its share of the head dims.
// Each warp keeps the same online-softmax max and sum (the same values in
// the same order) and the output of its own dims. Dynamic shared memory:
// two buffers of a chunk's K and V (CHUNK rows of D + PAD bf16 values
// each), which the merge reuses, then P (16 x CHUNK bf16, PAD after each
// row) and the 4 position groups' maxima and sums of each unit
// (geometry::attention_shared_bytes).
template <int D>
__device__ __forceinline__ void
attention_block(const float* __restrict__ q,                // (rows, hq*D), RoPE applied
                const __nv_bfloat16* __restrict__ k_cache,  // (blocks, 16, hk, D)
                const __nv_bfloat16* __restrict__ v_cache,  // (blocks, 16, hk, D)
                const unsigned* __restrict__ step,          // [n, start]
                const unsigned* __restrict__ table,         // block table
                float* __restrict__ partial,                // (rows, hq, S = splits, D + 2)
                unsigned* __restrict__ counters,            // (unit tiles, hk), zero between launches
                __nv_bfloat16* __restrict__ out,            // (rows, hq*D)
                int hq, int hk, int tile_units, int splits, float scale) {
    constexpr int STRIDE = D + PAD, BUFFER = 2 * CHUNK * STRIDE, KSTEPS = D / 16;
    // Head dims of a warp's share of P V (at least one 8-dim MMA tile; at
    // D < 32 only the first D / 8 warps take one).
    constexpr int WARP_DIMS = D / WARPS < 8 ? 8 : D / WARPS, WARP_TILES = WARP_DIMS / 8;
    extern __shared__ __align__(16) unsigned char smem[];
    __nv_bfloat16* buffers = reinterpret_cast<__nv_bfloat16*>(smem);
    __nv_bfloat16* probs = buffers + 2 * BUFFER;  // (16, CHUNK + PAD)
    float* group_max = reinterpret_cast<float*>(probs + 16 * (CHUNK + PAD));  // (WARPS, 16)
    float* group_sum = group_max + WARPS * 16;                                 // (WARPS, 16)
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int kv_head = blockIdx.x, group = hq / hk, slot = blockIdx.z, slots = gridDim.z;
    const int n = (int)step[0], start = (int)step[1];
    // Units u0.. of the (row, query head of the group) pairs, row-major
    // (tile_units <= UNITS of them).
    const int u0 = blockIdx.y * tile_units;
    // Units past the step's rows are never read (the products mask them).
    if (u0 >= n * group) return;
    const int units = min(tile_units, n * group - u0);
    const int block_visible = start + (u0 + units - 1) / group + 1;
    // This lane's units: rows g and g + 8 of the tile.
    int visible[2];
    size_t unit[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int u = u0 + g + 8 * i, t = u / group;
        unit[i] = (size_t)t * hq + kv_head * group + u % group;
        visible[i] = g + 8 * i < units ? start + t + 1 : 0;
    }
    const int d0 = warp * WARP_DIMS;
    const bool pv_warp = d0 < D;
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
    // q as the MMA's A fragments, rounded to bf16 (every warp holds them).
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
    // The online softmax of rows g (i = 0) and g + 8 (i = 1): max, sum, and
    // the output of this warp's dims (o[j][2i], o[j][2i + 1]: dims
    // d0 + 8j + 2c and the next).
    float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.0f, 0.0f}, o[WARP_TILES][4];
#pragma unroll
    for (int j = 0; j < WARP_TILES; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    for (int buffer = 0; have; buffer ^= 1) {
        cp_async_wait<1>();
        __syncthreads();
        const __nv_bfloat16* ks = buffers + buffer * BUFFER;
        const __nv_bfloat16* vs = ks + CHUNK * STRIDE;
        // Scores of positions 16 warp.. (two tiles of 8), the dot product in
        // K steps of 16, and their maximum per unit.
        float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
        for (int kk = 0; kk < KSTEPS; ++kk)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const __nv_bfloat16* kp = ks + (warp * 16 + j * 8 + g) * STRIDE + kk * 16 + 2 * c;
                mma_bf16(s[j], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], *reinterpret_cast<const unsigned*>(kp),
                         *reinterpret_cast<const unsigned*>(kp + 8));
            }
        float part_max[2] = {NEG_INF, NEG_INF};
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int i = e >> 1, pos = c0 + warp * 16 + j * 8 + 2 * c + (e & 1);
                s[j][e] = pos < visible[i] ? s[j][e] * scale : NEG_INF;
                part_max[i] = fmaxf(part_max[i], s[j][e]);
            }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            part_max[i] = fmaxf(part_max[i], __shfl_xor_sync(0xffffffffu, part_max[i], 1));
            part_max[i] = fmaxf(part_max[i], __shfl_xor_sync(0xffffffffu, part_max[i], 2));
            if (c == 0) group_max[warp * 16 + g + 8 * i] = part_max[i];
        }
        __syncthreads();
        // Every warp: the same chunk maximum, correction and probabilities'
        // sums; its own probabilities into shared memory as bf16.
        float correction[2], part_sum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float chunk_max = group_max[g + 8 * i];
#pragma unroll
            for (int w = 1; w < WARPS; ++w) chunk_max = fmaxf(chunk_max, group_max[w * 16 + g + 8 * i]);
            const float m_new = fmaxf(m[i], chunk_max);
            correction[i] = m_new == NEG_INF ? 1.0f : __expf(m[i] - m_new);
            m[i] = m_new;
        }
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int i = e >> 1;
                s[j][e] = s[j][e] == NEG_INF ? 0.0f : __expf(s[j][e] - m[i]);
                part_sum[i] += s[j][e];
            }
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            part_sum[i] += __shfl_xor_sync(0xffffffffu, part_sum[i], 1);
            part_sum[i] += __shfl_xor_sync(0xffffffffu, part_sum[i], 2);
            if (c == 0) group_sum[warp * 16 + g + 8 * i] = part_sum[i];
#pragma unroll
            for (int j = 0; j < 2; ++j)
                *reinterpret_cast<unsigned*>(probs + (g + 8 * i) * (CHUNK + PAD) + warp * 16 + j * 8 + 2 * c) =
                    pack_bf16(s[j][2 * i], s[j][2 * i + 1]);
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float sum = group_sum[g + 8 * i];
#pragma unroll
            for (int w = 1; w < WARPS; ++w) sum += group_sum[w * 16 + g + 8 * i];
            l[i] = l[i] * correction[i] + sum;
        }
        // P V for this warp's dims: the chunk's 64 positions in K steps of 16.
        if (pv_warp) {
            float acc[WARP_TILES][4];
#pragma unroll
            for (int j = 0; j < WARP_TILES; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < CHUNK / 16; ++kk) {
                const __nv_bfloat16* pp = probs + g * (CHUNK + PAD) + kk * 16 + 2 * c;
                const unsigned a0 = *reinterpret_cast<const unsigned*>(pp);
                const unsigned a1 = *reinterpret_cast<const unsigned*>(pp + 8 * (CHUNK + PAD));
                const unsigned a2 = *reinterpret_cast<const unsigned*>(pp + 8);
                const unsigned a3 = *reinterpret_cast<const unsigned*>(pp + 8 * (CHUNK + PAD) + 8);
                const __nv_bfloat16* vp = vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * STRIDE + d0;
                if constexpr (WARP_TILES == 1) {
                    unsigned b[2];
                    ldmatrix_x2_trans(b, vp);
                    mma_bf16(acc[0], a0, a1, a2, a3, b[0], b[1]);
                } else {
#pragma unroll
                    for (int dp = 0; dp < WARP_TILES / 2; ++dp) {
                        unsigned b[4];
                        ldmatrix_x4_trans(b, vp + dp * 16 + (lane >> 4) * 8);
                        mma_bf16(acc[2 * dp], a0, a1, a2, a3, b[0], b[1]);
                        mma_bf16(acc[2 * dp + 1], a0, a1, a2, a3, b[2], b[3]);
                    }
                }
            }
#pragma unroll
            for (int j = 0; j < WARP_TILES; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) o[j][e] = o[j][e] * correction[e >> 1] + acc[j][e];
        }
        const bool split_ends = !has_next || next_split != split;
        if (split_ends) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                // A split with no position of this unit writes nothing (the
                // merge reads only the splits that hold its positions).
                if (split * CHUNK < visible[i]) {
                    float* mine = partial + (unit[i] * splits + split) * (D + 2);
                    if (warp == 0 && c == 0) {
                        mine[0] = m[i];
                        mine[1] = l[i];
                    }
                    if (pv_warp)
#pragma unroll
                        for (int j = 0; j < WARP_TILES; ++j)
                            *reinterpret_cast<float2*>(mine + 2 + d0 + j * 8 + 2 * c) =
                                make_float2(o[j][2 * i], o[j][2 * i + 1]);
                }
                m[i] = NEG_INF;
                l[i] = 0.0f;
            }
#pragma unroll
            for (int j = 0; j < WARP_TILES; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
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
    merge_splits<D>(partial, out, weights, weights + UNITS * MERGE_STRIDE, weights + 2 * UNITS * MERGE_STRIDE, units,
                    group, u0, start, kv_head, hq, splits);
    if (threadIdx.x == 0) *counter = 0u;
}

// One kernel a head dimension (geometry::ATTENTION_HEAD_DIMS):
// attention_d<D>.
#define ATTENTION(D)                                                                                                 \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) attention_d##D(                                         \
        const float* __restrict__ q, const __nv_bfloat16* __restrict__ k_cache,                                      \
        const __nv_bfloat16* __restrict__ v_cache, const unsigned* __restrict__ step,                                \
        const unsigned* __restrict__ table, float* __restrict__ partial, unsigned* __restrict__ counters,            \
        __nv_bfloat16* __restrict__ out, int hq, int hk, int tile_units, int splits, float scale) {                  \
        attention_block<D>(q, k_cache, v_cache, step, table, partial, counters, out, hq, hk, tile_units, splits,     \
                           scale);                                                                                   \
    }

ATTENTION(16)
ATTENTION(32)
ATTENTION(64)
ATTENTION(128)
