// Attention of a block of query rows over the paged bf16 KV cache, causal
// inside the block (row t sees positions 0..=start+t), split along the KV
// length: block (head, row, split) walks the chunks split, split + S, ...
// with an online softmax and writes (max, sum, unnormalized output); the
// combine kernel merges the S partials of a (row, head). S is fixed for all
// widths, so a row's result does not depend on how many rows share its step.
#include <cuda_bf16.h>

#define BLOCK_TOKENS 16
#define CHUNK 64
#define THREADS 128
#define MAX_HEAD_DIM 256
// -infinity without math.h (NVRTC has no standard headers).
#define NEG_INF (-__int_as_float(0x7f800000))

extern "C" __global__ void __launch_bounds__(THREADS)
attention_partial(const float* __restrict__ q,                // (rows, hq*d), RoPE applied
                  const __nv_bfloat16* __restrict__ k_cache,  // (blocks, 16, hk, d)
                  const __nv_bfloat16* __restrict__ v_cache,  // (blocks, 16, hk, d)
                  const unsigned* __restrict__ step,          // [n, start]
                  const unsigned* __restrict__ table,         // block table
                  float* __restrict__ partial,                // (rows, hq, S, d + 2)
                  int hq, int hk, int d, float scale) {
    __shared__ float qs[MAX_HEAD_DIM];
    __shared__ float probs[CHUNK];
    __shared__ unsigned entries[CHUNK];
    __shared__ float sums[THREADS];  // (groups - 1, d): groups * d <= THREADS
    const int h = blockIdx.x, t = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
    const int tid = threadIdx.x;
    if ((unsigned)t >= step[0]) return;
    const int visible = (int)step[1] + t + 1;
    // A split with no chunk writes nothing: the combine reads only the
    // splits that hold positions.
    if (split * CHUNK >= visible) return;
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
        if (tid < CHUNK) {
            const int p = c0 + tid;
            float score = NEG_INF;
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
            probs[tid] = score;
            entries[tid] = entry;
        }
        __syncthreads();
        float chunk_max = NEG_INF;
        for (int j = 0; j < CHUNK; ++j) chunk_max = fmaxf(chunk_max, probs[j]);
        const float m_new = fmaxf(m, chunk_max);
        const float correction = expf(m - m_new);
        __syncthreads();
        if (tid < CHUNK) probs[tid] = expf(probs[tid] - m_new);
        __syncthreads();
        float sum = 0.0f;
        for (int j = 0; j < CHUNK; ++j) sum += probs[j];
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

// Merges the S partials of (head, row) into the bf16 attention output.
// Grid (hq, rows), block d threads. Rows past the step's count get zeros.
extern "C" __global__ void attention_combine(const float* __restrict__ partial,  // (rows, hq, S, d + 2)
                                             const unsigned* __restrict__ step,  // [n, start]
                                             __nv_bfloat16* __restrict__ out,    // (rows, hq*d)
                                             int hq, int d, int splits) {
    const int h = blockIdx.x, t = blockIdx.y, e = threadIdx.x;
    __nv_bfloat16* dst = out + (size_t)t * hq * d + h * d;
    if ((unsigned)t >= step[0]) {
        dst[e] = __float2bfloat16(0.0f);
        return;
    }
    const float* base = partial + ((size_t)t * hq + h) * splits * (d + 2);
    const int visible = (int)step[1] + t + 1;
    const int active = min(splits, (visible + CHUNK - 1) / CHUNK);
    float m = NEG_INF;
#pragma unroll 8
    for (int s = 0; s < active; ++s) m = fmaxf(m, base[s * (d + 2)]);
    float l = 0.0f, o = 0.0f;
#pragma unroll 8
    for (int s = 0; s < active; ++s) {
        const float ms = base[s * (d + 2)];
        if (ms == NEG_INF) continue;
        const float w = expf(ms - m);
        l += base[s * (d + 2) + 1] * w;
        o += base[s * (d + 2) + 2 + e] * w;
    }
    dst[e] = __float2bfloat16(o / l);
}
