// RMSNorm of f32 rows (the residual stream, into which every product adds
// its result in place) to bf16, the input of the next product. One block a
// row; each warp computes the row's scale (warp_inv_rms, rms.cuh) and the
// block writes the row. Steps of up to FUSED_NORM_MAX_ROWS rows skip this
// kernel: their products normalize their input themselves (matmul.cu).
#include <cuda_bf16.h>

extern "C" __global__ void rms_norm(const float* __restrict__ x,    // (rows, hidden)
                                    const float* __restrict__ w,    // (hidden)
                                    __nv_bfloat16* __restrict__ out,  // (rows, hidden)
                                    int hidden, float eps) {
    wait_for_producers();
    let_dependents_launch();
    const float* row = x + (size_t)blockIdx.x * hidden;
    const float inv = warp_inv_rms(row, hidden, eps);
    __nv_bfloat16* o = out + (size_t)blockIdx.x * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = __float2bfloat16(w[i] * (row[i] * inv));
}
