// Weights generated on the device from a seed (for speed measurements at
// model shapes whose checkpoints are not at hand): uniform in [-scale, scale).
#include <cuda_bf16.h>

__device__ unsigned long long splitmix64(unsigned long long z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

extern "C" __global__ void fill_uniform_bf16(__nv_bfloat16* __restrict__ out, unsigned long long n,
                                             unsigned long long seed, float scale) {
    wait_for_producers();
    let_dependents_launch();
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long bits = splitmix64(seed ^ splitmix64(i));
        const float u = (float)(bits >> 40) * (1.0f / 16777216.0f);  // [0, 1)
        out[i] = __float2bfloat16((2.0f * u - 1.0f) * scale);
    }
}
