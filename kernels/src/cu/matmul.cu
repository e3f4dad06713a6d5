// Skinny products y (+)= x @ w^T for 1..128 rows of x (bf16, (rows, K)) and
// w (bf16, (N, K)), f32 accumulation on the tensor cores (mma m16n8k16): the
// weight is the M side (16 rows a block), the tokens the N side (8 a tile), so
// each weight element is read once for all rows of the step. Every output
// element is the same chain of MMAs over K whatever the number of tiles, so a
// row's result does not depend on the width of its step (lossless
// speculation needs that). Requires K % 8 == 0.
//
// Lane (g = lane / 4, c = lane % 4) loads 8 consecutive K values (16 bytes)
// of weight rows g and g + 8 and of token g of each tile at k0 + 8c, and
// feeds them to two MMAs; the fragment's logical K order is a permutation of
// memory order, the same one for both operands, so the dot product is exact.
#include <cuda_bf16.h>

#define WARPS 8

__device__ __forceinline__ void mma_bf16(float* acc, unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                         unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint4 load16(const __nv_bfloat16* p, bool ok) {
    if (!ok) return make_uint4(0u, 0u, 0u, 0u);
    return __ldg(reinterpret_cast<const uint4*>(p));
}

// Block = WARPS warps on the same 16 weight rows, splitting K: warp w takes
// the 32-wide K steps w, w + WARPS, ... (together 256 contiguous values of a
// row at a time), loading UNROLL steps ahead of their MMAs. The partial sums
// are added in a fixed order through shared memory ((w + 4) into w, then
// 1..3 into 0), so the result is deterministic and the same for any number
// of tiles.
template <int TILES>
__device__ void skinny(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                       float* __restrict__ y, const unsigned* __restrict__ step, int n, int k, int accumulate) {
    constexpr int UNROLL = TILES <= 2 ? 4 : (TILES <= 8 ? 2 : 1);
    __shared__ float partial[WARPS / 2][TILES * 4][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c = lane & 3;
    const int row0 = blockIdx.x * 16;
    if (row0 >= n) return;
    const int rows = (int)step[0];
    const bool lo_ok = row0 + g < n, hi_ok = row0 + g + 8 < n;
    const __nv_bfloat16* w_lo = w + (size_t)(row0 + g) * k;
    const __nv_bfloat16* w_hi = w + (size_t)(row0 + g + 8) * k;
    float acc[TILES][4];
#pragma unroll
    for (int j = 0; j < TILES; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    for (int k0 = warp * 32; k0 < k; k0 += WARPS * 32 * UNROLL) {
        uint4 a[UNROLL], b[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int kk = k0 + u * WARPS * 32 + 8 * c;
            a[u] = load16(w_lo + kk, lo_ok && kk < k);
            b[u] = load16(w_hi + kk, hi_ok && kk < k);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            const int kk = k0 + u * WARPS * 32 + 8 * c;
#pragma unroll
            for (int j = 0; j < TILES; ++j) {
                const int token = j * 8 + g;
                const uint4 xv = load16(x + (size_t)token * k + kk, token < rows && kk < k);
                mma_bf16(acc[j], a[u].x, b[u].x, a[u].y, b[u].y, xv.x, xv.y);
                mma_bf16(acc[j], a[u].z, b[u].z, a[u].w, b[u].w, xv.z, xv.w);
            }
        }
    }
    // Round 1: warps 4..7 hand their sums to warps 0..3.
    if (warp >= WARPS / 2) {
#pragma unroll
        for (int j = 0; j < TILES; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) partial[warp - WARPS / 2][j * 4 + r][lane] = acc[j][r];
    }
    __syncthreads();
    if (warp < WARPS / 2) {
#pragma unroll
        for (int j = 0; j < TILES; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[j][r] += partial[warp][j * 4 + r][lane];
    }
    __syncthreads();
    // Round 2: warps 1..3 hand theirs to warp 0.
    if (warp >= 1 && warp < WARPS / 2) {
#pragma unroll
        for (int j = 0; j < TILES; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) partial[warp - 1][j * 4 + r][lane] = acc[j][r];
    }
    __syncthreads();
    if (warp > 0) return;
#pragma unroll
    for (int other = 0; other < WARPS / 2 - 1; ++other)
#pragma unroll
        for (int j = 0; j < TILES; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[j][r] += partial[other][j * 4 + r][lane];
#pragma unroll
    for (int j = 0; j < TILES; ++j) {
        const int t0 = j * 8 + 2 * c;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int token = t0 + (r & 1);
            const int row = row0 + g + (r >> 1) * 8;
            if (token < rows && row < n) {
                float* dst = y + (size_t)token * n + row;
                *dst = accumulate ? *dst + acc[j][r] : acc[j][r];
            }
        }
    }
}

#define SKINNY(TILES)                                                                                          \
    extern "C" __global__ void __launch_bounds__(WARPS * 32)                                                   \
        skinny_t##TILES(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,             \
                        float* __restrict__ y, const unsigned* __restrict__ step, int n, int k, int accumulate) { \
        skinny<TILES>(x, w, y, step, n, k, accumulate);                                                        \
    }

SKINNY(1)
SKINNY(2)
SKINNY(4)
SKINNY(8)
SKINNY(16)
