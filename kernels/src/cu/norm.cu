// RMSNorm of f32 rows (the residual stream, into which every product adds
// its result in place) to bf16, the input of the next product. One block a
// row; each warp computes the row's scale (warp_inv_rms, rms.cuh) and the
// block writes the row. Steps of up to FUSED_NORM_MAX_ROWS rows skip this
// kernel: their products normalize their input themselves (matmul.cu).
//
// Before the wait for the kernel ahead (pdl.cuh), each thread loads its
// first NORM_PRELOAD values of the norm weight (a model constant) into
// registers, all of it for rows of up to NORM_PRELOAD * blockDim values.
#include <cuda_bf16.h>

#define NORM_PRELOAD 16

extern "C" __global__ void rms_norm(const float* __restrict__ x,    // (rows, hidden)
                                    const float* __restrict__ w,    // (hidden)
                                    __nv_bfloat16* __restrict__ out,  // (rows, hidden)
                                    int hidden, float eps) {
    float wv[NORM_PRELOAD];
#pragma unroll
    for (int j = 0; j < NORM_PRELOAD; ++j) {
        const int i = threadIdx.x + j * blockDim.x;
        wv[j] = i < hidden ? __ldg(w + i) : 0.0f;
    }
    wait_for_producers();
    let_dependents_launch();
    const float* row = x + (size_t)blockIdx.x * hidden;
    const float inv = warp_inv_rms(row, hidden, eps);
    __nv_bfloat16* o = out + (size_t)blockIdx.x * hidden;
#pragma unroll
    for (int j = 0; j < NORM_PRELOAD; ++j) {
        const int i = threadIdx.x + j * blockDim.x;
        if (i < hidden) o[i] = __float2bfloat16(wv[j] * (row[i] * inv));
    }
    for (int i = threadIdx.x + NORM_PRELOAD * blockDim.x; i < hidden; i += blockDim.x)
        o[i] = __float2bfloat16(w[i] * (row[i] * inv));
}
