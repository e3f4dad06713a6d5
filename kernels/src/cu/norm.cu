// RMSNorm of f32 rows (the residual stream, into which every product adds
// its result in place) to bf16, the input of the next product. One block a row.
#include <cuda_bf16.h>

__device__ float block_sum(float v, float* scratch) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) total += scratch[w];
    return total;
}

extern "C" __global__ void rms_norm(const float* __restrict__ x,    // (rows, hidden)
                                    const float* __restrict__ w,    // (hidden)
                                    __nv_bfloat16* __restrict__ out,  // (rows, hidden)
                                    int hidden, float eps) {
    __shared__ float scratch[32];
    wait_for_producers();
    let_dependents_launch();
    const float* row = x + (size_t)blockIdx.x * hidden;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) ss += row[i] * row[i];
    const float inv = 1.0f / sqrtf(block_sum(ss, scratch) / (float)hidden + eps);
    __nv_bfloat16* o = out + (size_t)blockIdx.x * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = __float2bfloat16(w[i] * (row[i] * inv));
}
