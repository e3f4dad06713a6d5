// The RMSNorm scale of one f32 row, computed by one warp in a fixed order
// (lane l sums the squares of the float4s l, l + 32, ...; then a shuffle
// tree), prepended to the modules that normalize: the rms_norm kernel and
// the products that normalize their input rows themselves. Both get the
// same bits for a row, so a row's result does not depend on which of them
// ran it (a step's width picks one). Requires hidden % 4 == 0 and a 16-byte
// aligned row.
__device__ __forceinline__ float warp_inv_rms(const float* __restrict__ row, int hidden, float eps) {
    const int lane = threadIdx.x & 31;
    const float4* row4 = reinterpret_cast<const float4*>(row);
    float ss = 0.0f;
    for (int i = lane; i < hidden / 4; i += 32) {
        const float4 v = row4[i];
        // Explicit FMAs: no contraction choice of the compiler can make two
        // callers differ.
        ss = fmaf(v.x, v.x, ss);
        ss = fmaf(v.y, v.y, ss);
        ss = fmaf(v.z, v.z, ss);
        ss = fmaf(v.w, v.w, ss);
    }
    for (int offset = 16; offset > 0; offset >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, offset);
    return 1.0f / sqrtf(ss / (float)hidden + eps);
}

