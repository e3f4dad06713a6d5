// Asynchronous copies from global to shared memory (sm_80 and later),
// prepended to the modules that stage data with them (matmul, attention).
// A copy goes out without holding registers; cp_async_commit closes a group
// of copies and cp_async_wait<N> waits until at most N groups are pending
// (each thread for its own copies: a barrier makes them visible to others).

// Copies 16 bytes (both addresses 16-byte aligned); `ok` false writes 16
// zeros instead (src-size 0), for rows or K past the end.
__device__ __forceinline__ void cp_async16(void* smem, const void* global, bool ok) {
    const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(global), "r"(ok ? 16 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
