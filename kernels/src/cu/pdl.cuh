// Programmatic dependent launch (Hopper and later), prepended to every
// module. The host launches each kernel allowing it to start before the
// kernel ahead of it in the stream has finished; every kernel calls
// wait_for_producers() before it touches memory an earlier kernel writes or
// reads (so it also covers the kernels before that one: a kernel completes
// only after its own wait), then let_dependents_launch(), so the next kernel
// can run its prologue (the products prefetch their weights) while this
// one runs. Below sm_90, and when the host launches plainly, both are no-ops.
__device__ __forceinline__ void wait_for_producers() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void let_dependents_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Fetches a 16-byte line of a weight into L2 ahead of its use.
__device__ __forceinline__ void prefetch_l2(const void* p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

