// Embedding gather: one block per token row; bf16 table rows to f32.
// Rows past the step's token count are zeroed so padded rows stay finite.
#include <cuda_bf16.h>

extern "C" __global__ void embed_gather(const __nv_bfloat16* __restrict__ table,  // (vocab, hidden)
                                        const unsigned* __restrict__ step,        // [n, start]
                                        const unsigned* __restrict__ tokens,      // (rows)
                                        float* __restrict__ x,                    // (rows, hidden)
                                        int hidden, int vocab) {
    wait_for_producers();
    let_dependents_launch();
    const int t = blockIdx.x;
    float* row = x + (size_t)t * hidden;
    unsigned token = tokens[t];
    if ((unsigned)t >= step[0] || token >= (unsigned)vocab) {
        for (int i = threadIdx.x; i < hidden; i += blockDim.x) row[i] = 0.0f;
        return;
    }
    const __nv_bfloat16* src = table + (size_t)token * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) row[i] = __bfloat162float(src[i]);
}
