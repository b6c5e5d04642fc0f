/*
 * dispatch.c -- CPU detection (once) and the kernel tables.
 *
 * The AVX2 table is offered only when CPUID reports AVX2, FMA and F16C (the
 * float16 conversions, src/avx2/half.c) *and* the OS saves YMM state
 * (OSXSAVE + XGETBV), so the scalar path is what runs on
 * older CPUs and on non-x86 builds.  On aarch64 the NEON table is always
 * offered (AdvSIMD is baseline there) and is the default.
 * The AVX-512 table is offered when CPUID reports AVX-512 F, BW, DQ and VL
 * (and AVX2 + FMA, whose kernels its A entries borrow) and XGETBV shows
 * that the OS saves the opmask and ZMM state (XCR0 bits 1, 2, 5, 6, 7); it
 * is then the default.
 * CSOFTMAX_ISA=scalar|avx2|avx512|neon forces a table.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif
#include "csoftmax.h"
#include "kernels.h"

#if defined(_MSC_VER)
#include <intrin.h>
#endif

/* The tables, from the kernel list: CSM_ENTRY_<Y|S|A|N>(field, isa) gives
 * ".field = csm_<field>_<isa>," (Y), the scalar kernel (S), the AVX2
 * kernel (A) or nothing (N: the member stays NULL). */
#define CSM_ENTRY_Y(field, isa) .field = csm_##field##_##isa,
#define CSM_ENTRY_S(field, isa) .field = csm_##field##_scalar,
#define CSM_ENTRY_A(field, isa) .field = csm_##field##_avx2,
#define CSM_ENTRY_N(field, isa)

static const csm_kernel_table table_scalar = {
    .isa = CSM_ISA_SCALAR, .name = "scalar",
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) CSM_ENTRY_##on_scalar(field, scalar)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
};

#ifdef CSM_BUILD_AVX2
static const csm_kernel_table table_avx2 = {
    .isa = CSM_ISA_AVX2, .name = "avx2",
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) CSM_ENTRY_##on_avx2(field, avx2)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
};
#endif

#ifdef CSM_BUILD_AVX512
static const csm_kernel_table table_avx512 = {
    .isa = CSM_ISA_AVX512, .name = "avx512",
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) CSM_ENTRY_##on_avx512(field, avx512)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
};
#endif

#ifdef CSM_BUILD_NEON
static const csm_kernel_table table_neon = {
    .isa = CSM_ISA_NEON, .name = "neon",
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) CSM_ENTRY_##on_neon(field, neon)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
};
#endif

/* The list itself, for introspection (csoftmax._core.kernel_list()). */
static const char *const kernel_names[] = {
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) #field,
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
};

int csm_kernel_count(void)
{
    return (int)(sizeof kernel_names / sizeof kernel_names[0]);
}

const char *csm_kernel_name(int i)
{
    return (i >= 0 && i < csm_kernel_count()) ? kernel_names[i] : NULL;
}

int csm_kernel_present(const csm_kernel_table *t, int i)
{
    int k = 0;
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) \
    if (i == k++) return t->field != NULL;
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
    return 0;
}

#ifdef CSM_BUILD_AVX2
#if defined(__GNUC__) || defined(__clang__)
#include <cpuid.h>
#endif
static int cpu_has_avx2_fma(void)
{
#if defined(CSM_BUILD_AVX2) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    /* libgcc/compiler-rt only report AVX2 when the OS enables YMM state. */
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return 0;
    /* F16C: CPUID leaf 1, ECX bit 29 (not every compiler's
     * __builtin_cpu_supports knows "f16c") */
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c >> 29) & 1;
#elif defined(CSM_BUILD_AVX2) && defined(_MSC_VER)
    int r[4];
    __cpuid(r, 1);
    int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    int f16c = (r[2] >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    if ((_xgetbv(0) & 6) != 6) return 0;
    __cpuidex(r, 7, 0);
    return (r[1] >> 5) & 1;
#else
    return 0;
#endif
}
#endif /* CSM_BUILD_AVX2 */

#ifdef CSM_BUILD_AVX512
#include <cpuid.h>
/* AVX-512 F+BW+DQ+VL from CPUID leaf 7 and, from XGETBV, an OS that saves
 * SSE, AVX, opmask, ZMM0-15 upper halves and ZMM16-31 (XCR0 bits 1, 2, 5,
 * 6, 7).  Checked by hand rather than with __builtin_cpu_supports, which
 * (depending on the compiler version) does not look at XCR0. */
static int cpu_has_avx512(void)
{
    unsigned a, b, c, d;
    if (!cpu_has_avx2_fma()) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return 0; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6u) != 0xE6u) return 0;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned need = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31); /* F DQ BW VL */
    return (b & need) == need;
}
#endif /* CSM_BUILD_AVX512 */

const csm_kernel_table *csm_kernels_for(csm_isa isa)
{
    switch (isa) {
    case CSM_ISA_SCALAR: return &table_scalar;
#ifdef CSM_BUILD_AVX2
    case CSM_ISA_AVX2: return cpu_has_avx2_fma() ? &table_avx2 : NULL;
#endif
#ifdef CSM_BUILD_AVX512
    case CSM_ISA_AVX512: return cpu_has_avx512() ? &table_avx512 : NULL;
#endif
#ifdef CSM_BUILD_NEON
    case CSM_ISA_NEON: return &table_neon;
#endif
    default: return NULL;
    }
}

static const csm_kernel_table *chosen = NULL;
static int request_error = 0;

const csm_kernel_table *csm_kernels(void)
{
    /* Idempotent: a race between two first callers stores the same pointer. */
    if (chosen) return chosen;
    const csm_kernel_table *best = csm_kernels_for(CSM_ISA_AVX512);
    if (!best) best = csm_kernels_for(CSM_ISA_AVX2);
    if (!best) best = csm_kernels_for(CSM_ISA_NEON);
    if (!best) best = &table_scalar;
    const char *req = getenv("CSOFTMAX_ISA");
    if (req && *req) {
        const csm_kernel_table *t = NULL;
        if (strcmp(req, "scalar") == 0) t = csm_kernels_for(CSM_ISA_SCALAR);
        else if (strcmp(req, "avx2") == 0) t = csm_kernels_for(CSM_ISA_AVX2);
        else if (strcmp(req, "avx512") == 0) t = csm_kernels_for(CSM_ISA_AVX512);
        else if (strcmp(req, "neon") == 0) t = csm_kernels_for(CSM_ISA_NEON);
        if (t) best = t; else request_error = 1;
    }
    chosen = best;
    return chosen;
}

int csm_isa_request_error(void)
{
    csm_kernels();
    return request_error;
}

/* ---- the streaming-store hint (csoftmax.h) ------------------------------ */
#if defined(_MSC_VER)
static __declspec(thread) int stream_stores = 1;
#else
static _Thread_local int stream_stores = 1;
#endif

void csm_set_stream_stores(int on) { stream_stores = on != 0; }
int csm_stream_stores(void) { return stream_stores; }

int csm_page_resident(const void *p)
{
#if defined(__linux__)
    static long page = 0;
    if (page == 0) page = sysconf(_SC_PAGESIZE);
    if (page > 0) {
        unsigned char v = 1;
        void *a = (void *)((uintptr_t)p & ~(uintptr_t)(page - 1));
        if (mincore(a, (size_t)page, &v) == 0) return v & 1;
    }
#else
    (void)p;
#endif
    return 1;
}
