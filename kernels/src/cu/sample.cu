// Greedy sampling on the device: the argmax of each logit row, lowest id on
// ties (as torch.argmax and the CPU's Logits::argmax). One block a row.
extern "C" __global__ void argmax_rows(const float* __restrict__ logits,  // (rows, vocab)
                                       const unsigned* __restrict__ step,  // [n, start]
                                       unsigned* __restrict__ out,         // (rows)
                                       int vocab) {
    __shared__ float best_value[1024];
    __shared__ int best_index[1024];
    wait_for_producers();
    let_dependents_launch();
    const int r = blockIdx.x;
    if ((unsigned)r >= step[0]) return;
    const float* row = logits + (size_t)r * vocab;
    float bv = 0.0f;
    int bi = -1;
    // 16-byte loads over the first vocab - vocab % 4 values (rows start
    // 16-byte aligned when vocab % 4 == 0; else all go the scalar way);
    // each thread visits its indices in increasing order, so the first
    // maximum wins.
    const int vec = (vocab % 4 == 0) ? vocab / 4 : 0;
    const float4* row4 = reinterpret_cast<const float4*>(row);
#pragma unroll 4
    for (int i = threadIdx.x; i < vec; i += blockDim.x) {
        const float4 v = __ldg(row4 + i);
        const float vs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            if (bi < 0 || vs[e] > bv) {
                bv = vs[e];
                bi = 4 * i + e;
            }
        }
    }
    for (int i = 4 * vec + threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = row[i];
        if (bi < 0 || v > bv) {
            bv = v;
            bi = i;
        }
    }
    best_value[threadIdx.x] = bv;
    best_index[threadIdx.x] = bi;
    __syncthreads();
    for (int stride = blockDim.x >> 1; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) {
            const float ov = best_value[threadIdx.x + stride];
            const int oi = best_index[threadIdx.x + stride];
            const int mi = best_index[threadIdx.x];
            if (oi >= 0 && (mi < 0 || ov > best_value[threadIdx.x] || (ov == best_value[threadIdx.x] && oi < mi))) {
                best_value[threadIdx.x] = ov;
                best_index[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[r] = (unsigned)best_index[0];
}
