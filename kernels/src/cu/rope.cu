// After the fused QKV product of models whose q and k heads are normalized
// (qwen3; the others get bias, RoPE and the append in the product's
// epilogue, matmul.cu): bias, per-head RMSNorm of q and k, RoPE on the
// pairs (i, i + d/2), then q to an f32 buffer and k, v into the paged bf16
// KV cache at the slots of the step's positions.
// Grid (rows, hq + 2 hk), block d/2 threads: thread i owns the pair (i, i + d/2).
#include <cuda_bf16.h>

#define BLOCK_TOKENS 16

extern "C" __global__ void qkv_rope_append(const float* __restrict__ qkv,       // (rows, (hq+2hk)*d)
                                           const float* __restrict__ bias,      // ((hq+2hk)*d) or null
                                           const float* __restrict__ q_norm,    // (d) or null
                                           const float* __restrict__ k_norm,    // (d) or null
                                           const float* __restrict__ inv_freq,  // (d/2)
                                           const unsigned* __restrict__ step,   // [n, start]
                                           const unsigned* __restrict__ table,  // block table
                                           float* __restrict__ q_out,           // (rows, hq*d)
                                           __nv_bfloat16* __restrict__ k_cache,  // (blocks, 16, hk, d)
                                           __nv_bfloat16* __restrict__ v_cache,  // (blocks, 16, hk, d)
                                           int hq, int hk, int d, float eps) {
    __shared__ float squares[128];
    wait_for_producers();
    let_dependents_launch();
    const int t = blockIdx.x, head = blockIdx.y, i = threadIdx.x, half = d >> 1;
    if ((unsigned)t >= step[0]) return;
    const float* src = qkv + (size_t)t * (hq + 2 * hk) * d + head * d;
    float a = src[i], b = src[i + half];
    if (bias) {
        a += bias[head * d + i];
        b += bias[head * d + i + half];
    }
    const unsigned position = step[1] + (unsigned)t;
    const size_t entry = ((size_t)table[position / BLOCK_TOKENS] * BLOCK_TOKENS + position % BLOCK_TOKENS) * hk;
    if (head >= hq + hk) {
        __nv_bfloat16* dst = v_cache + (entry + (head - hq - hk)) * d;
        dst[i] = __float2bfloat16(a);
        dst[i + half] = __float2bfloat16(b);
        return;
    }
    const float* norm = head < hq ? q_norm : k_norm;
    if (norm) {
        squares[i] = a * a + b * b;
        __syncthreads();
        float ss = 0.0f;
        for (int j = 0; j < half; ++j) ss += squares[j];
        const float inv = 1.0f / sqrtf(ss / (float)d + eps);
        a = norm[i] * (a * inv);
        b = norm[i + half] * (b * inv);
    }
    const float angle = (float)position * inv_freq[i];
    const float c = cosf(angle), s = sinf(angle);
    const float ra = a * c - b * s, rb = b * c + a * s;
    if (head < hq) {
        float* dst = q_out + (size_t)t * hq * d + head * d;
        dst[i] = ra;
        dst[i + half] = rb;
    } else {
        __nv_bfloat16* dst = k_cache + (entry + (head - hq)) * d;
        dst[i] = __float2bfloat16(ra);
        dst[i + half] = __float2bfloat16(rb);
    }
}
