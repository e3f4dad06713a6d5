// The bf16 tensor-core MMA (m16n8k16, f32 accumulation) and the packing of
// its bf16 operands, prepended to the modules that use them (matmul,
// attention). Fragments (g = lane / 4,
// c = lane % 4): A (16x16) a0 = row g, columns 2c and 2c + 1; a1 = row
// g + 8, the same columns; a2 and a3 = columns 2c + 8 and 2c + 9 of those
// rows. B (16x8) b0 = rows 2c and 2c + 1 of column g; b1 = rows 2c + 8 and
// 2c + 9. C (16x8) c0, c1 = row g, columns 2c and 2c + 1; c2, c3 = row g + 8.
// Each output element is the same sum whichever row of the tile it sits in.
#include <cuda_bf16.h>

__device__ __forceinline__ void mma_bf16(float* acc, unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                         unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two floats rounded to bf16 and packed as one MMA operand register (lo in
// the low half).
__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&pair);
}
