// Attention of a block of query rows over the paged bf16 KV cache, causal
// inside the block (row t sees positions 0..=start+t), split along the KV
// length: block (head, row, split) walks the chunks split, split + S, ...
// with an online softmax and writes (max, sum, unnormalized output). The
// last of a (row, head)'s S blocks to finish (counted on a per-(row, head)
// counter, which it resets) merges the S partials in split order into the
// bf16 output, so no second kernel is launched. S is fixed for all widths,
// so a row's result does not depend on how many rows share its step.
#include <cuda_bf16.h>

#define BLOCK_TOKENS 16
#define CHUNK 64
#define THREADS 128
#define MAX_HEAD_DIM 256
// -infinity without math.h (NVRTC has no standard headers).
#define NEG_INF (-__int_as_float(0x7f800000))

// One split's (max, sum, unnormalized output) of (head h, row t).
__device__ void attend_split(const float* __restrict__ q, const __nv_bfloat16* __restrict__ k_cache,
                             const __nv_bfloat16* __restrict__ v_cache, const unsigned* __restrict__ table,
                             float* __restrict__ partial, int hq, int hk, int d, float scale, int h, int t,
                             int split, int splits, int visible) {
    __shared__ float qs[MAX_HEAD_DIM];
    __shared__ float probs[CHUNK];
    __shared__ unsigned entries[CHUNK];
    __shared__ float sums[THREADS];  // (groups - 1, d): groups * d <= THREADS
    __shared__ float chunk_maxes[CHUNK / 32], chunk_sums[CHUNK / 32];
    const int tid = threadIdx.x;
    const int kv_head = h / (hq / hk);
    for (int e = tid; e < d; e += THREADS) qs[e] = q[(size_t)t * hq * d + h * d + e];
    // Output: thread owns element e = tid % d of position group tid / d
    // (THREADS / d groups share a chunk's positions), combined at the end.
    const int groups = THREADS / d > 0 ? THREADS / d : 1;
    const int e_own = tid % d, group = tid / d;
    float m = NEG_INF, l = 0.0f, o = 0.0f, o_hi = 0.0f;
    for (int c0 = split * CHUNK; c0 < visible; c0 += splits * CHUNK) {
        __syncthreads();
        // Scores: one thread a position (a whole dot product, 16-byte loads).
        float score = NEG_INF;
        if (tid < CHUNK) {
            const int p = c0 + tid;
            unsigned entry = 0u;
            if (p < visible) {
                entry = table[p / BLOCK_TOKENS] * BLOCK_TOKENS + p % BLOCK_TOKENS;
                const uint4* key = reinterpret_cast<const uint4*>(k_cache + ((size_t)entry * hk + kv_head) * d);
                float dot = 0.0f;
#pragma unroll 4
                for (int v = 0; v < d / 8; ++v) {
                    const uint4 raw = __ldg(key + v);
                    const __nv_bfloat162* pairs = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const float2 f = __bfloat1622float2(pairs[i]);
                        dot += qs[v * 8 + 2 * i] * f.x + qs[v * 8 + 2 * i + 1] * f.y;
                    }
                }
                score = dot * scale;
            }
            entries[tid] = entry;
        }
        // The chunk's max and sum: shuffles inside each of its CHUNK / 32
        // warps, then their results through shared memory.
        float chunk_max = score;
        for (int offset = 16; offset > 0; offset >>= 1)
            chunk_max = fmaxf(chunk_max, __shfl_xor_sync(0xffffffffu, chunk_max, offset));
        if (tid < CHUNK && (tid & 31) == 0) chunk_maxes[tid >> 5] = chunk_max;
        __syncthreads();
        float m_new = m;
        for (int w = 0; w < CHUNK / 32; ++w) m_new = fmaxf(m_new, chunk_maxes[w]);
        const float correction = expf(m - m_new);
        float prob = tid < CHUNK ? expf(score - m_new) : 0.0f;
        if (tid < CHUNK) probs[tid] = prob;
        for (int offset = 16; offset > 0; offset >>= 1) prob += __shfl_xor_sync(0xffffffffu, prob, offset);
        if (tid < CHUNK && (tid & 31) == 0) chunk_sums[tid >> 5] = prob;
        __syncthreads();
        float sum = 0.0f;
        for (int w = 0; w < CHUNK / 32; ++w) sum += chunk_sums[w];
        l = l * correction + sum;
        o *= correction;
        o_hi *= correction;
        // Positions past `visible` have probability 0 and entry 0 (a valid
        // address), so the loop runs the whole chunk with no branch.
        if (group < groups) {
#pragma unroll 8
            for (int j = group; j < CHUNK; j += groups) {
                const __nv_bfloat16* value = v_cache + ((size_t)entries[j] * hk + kv_head) * d;
                o += probs[j] * __bfloat162float(value[e_own]);
                if (d > THREADS) o_hi += probs[j] * __bfloat162float(value[e_own + THREADS]);
            }
        }
        m = m_new;
    }
    // Sum the groups' outputs in group order.
    __syncthreads();
    if (group < groups && group > 0) sums[(group - 1) * d + e_own] = o;
    __syncthreads();
    float* out = partial + (((size_t)t * hq + h) * splits + split) * (d + 2);
    if (tid == 0) {
        out[0] = m;
        out[1] = l;
    }
    if (group == 0) {
        for (int other = 1; other < groups; ++other) o += sums[(other - 1) * d + e_own];
        out[2 + e_own] = o;
        if (d > THREADS) out[2 + e_own + THREADS] = o_hi;
    }
}

// Merges the S partials of (head h, row t) in split order into `dst`.
__device__ void combine_splits(const float* __restrict__ base, __nv_bfloat16* __restrict__ dst, int d, int splits,
                               int visible) {
    const int active = min(splits, (visible + CHUNK - 1) / CHUNK);
    float m = NEG_INF;
    for (int s = 0; s < active; ++s) m = fmaxf(m, __ldcg(base + s * (d + 2)));
    for (int e = threadIdx.x; e < d; e += THREADS) {
        float l = 0.0f, o = 0.0f;
        for (int s = 0; s < active; ++s) {
            const float ms = __ldcg(base + s * (d + 2));
            if (ms == NEG_INF) continue;
            const float w = expf(ms - m);
            l += __ldcg(base + s * (d + 2) + 1) * w;
            o += __ldcg(base + s * (d + 2) + 2 + e) * w;
        }
        dst[e] = __float2bfloat16(o / l);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
attention(const float* __restrict__ q,                // (rows, hq*d), RoPE applied
          const __nv_bfloat16* __restrict__ k_cache,  // (blocks, 16, hk, d)
          const __nv_bfloat16* __restrict__ v_cache,  // (blocks, 16, hk, d)
          const unsigned* __restrict__ step,          // [n, start]
          const unsigned* __restrict__ table,         // block table
          float* __restrict__ partial,                // (rows, hq, S, d + 2)
          unsigned* __restrict__ counters,            // (rows, hq), zero between launches
          __nv_bfloat16* __restrict__ out,            // (rows, hq*d)
          int hq, int hk, int d, float scale) {
    __shared__ bool last;
    wait_for_producers();
    let_dependents_launch();
    const int h = blockIdx.x, t = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
    // Rows past the step's count are never read (the products mask them).
    if ((unsigned)t >= step[0]) return;
    const int visible = (int)step[1] + t + 1;
    // A split with no chunk writes nothing (the merge reads only the splits
    // that hold positions) but is still counted.
    if (split * CHUNK < visible) attend_split(q, k_cache, v_cache, table, partial, hq, hk, d, scale, h, t, split, splits, visible);
    __threadfence();
    __syncthreads();
    unsigned* counter = counters + (size_t)t * hq + h;
    if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == (unsigned)splits - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    combine_splits(partial + ((size_t)t * hq + h) * splits * (d + 2), out + (size_t)t * hq * d + h * d, d, splits, visible);
    if (threadIdx.x == 0) *counter = 0u;
}
