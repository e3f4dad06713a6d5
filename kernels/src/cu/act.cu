// SwiGLU over the fused gate/up product: out = silu(gate) * up, to bf16.
#include <cuda_bf16.h>

extern "C" __global__ void swiglu(const float* __restrict__ gate_up,  // (rows, 2*inter): gate then up
                                  __nv_bfloat16* __restrict__ out,    // (rows, inter)
                                  int rows, int inter) {
    const size_t total = (size_t)rows * inter;
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total; idx += (size_t)gridDim.x * blockDim.x) {
        const size_t r = idx / inter, i = idx % inter;
        const float g = gate_up[r * 2 * inter + i], u = gate_up[r * 2 * inter + inter + i];
        out[idx] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
    }
}
