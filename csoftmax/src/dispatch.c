/*
 * dispatch.c -- CPU detection (once) and the kernel tables.
 *
 * The AVX2 table is offered only when CPUID reports AVX2 and FMA *and* the
 * OS saves YMM state (OSXSAVE + XGETBV), so the scalar path is what runs on
 * older CPUs and on non-x86 builds.  On aarch64 the NEON table is always
 * offered (AdvSIMD is baseline there) and is the default.
 * CSOFTMAX_ISA=scalar|avx2|neon forces a table.
 */
#include <stdlib.h>
#include <string.h>
#include "csoftmax.h"
#include "kernels.h"

#if defined(_MSC_VER)
#include <intrin.h>
#endif

/* The tables, from the kernel list: CSM_ENTRY_<Y|S|N>(field, isa) gives
 * ".field = csm_<field>_<isa>," (Y), the scalar kernel (S) or nothing (N:
 * the member stays NULL). */
#define CSM_ENTRY_Y(field, isa) .field = csm_##field##_##isa,
#define CSM_ENTRY_S(field, isa) .field = csm_##field##_scalar,
#define CSM_ENTRY_N(field, isa)

static const csm_kernel_table table_scalar = {
    .isa = CSM_ISA_SCALAR, .name = "scalar",
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon) CSM_ENTRY_##on_scalar(field, scalar)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
};

#ifdef CSM_BUILD_AVX2
static const csm_kernel_table table_avx2 = {
    .isa = CSM_ISA_AVX2, .name = "avx2",
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon) CSM_ENTRY_##on_avx2(field, avx2)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
};
#endif

#ifdef CSM_BUILD_NEON
static const csm_kernel_table table_neon = {
    .isa = CSM_ISA_NEON, .name = "neon",
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon) CSM_ENTRY_##on_neon(field, neon)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
};
#endif

/* The list itself, for introspection (csoftmax._core.kernel_list()). */
static const char *const kernel_names[] = {
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon) #field,
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
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon) \
    if (i == k++) return t->field != NULL;
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
    return 0;
}

#ifdef CSM_BUILD_AVX2
static int cpu_has_avx2_fma(void)
{
#if defined(CSM_BUILD_AVX2) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    /* libgcc/compiler-rt only report AVX2 when the OS enables YMM state. */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(CSM_BUILD_AVX2) && defined(_MSC_VER)
    int r[4];
    __cpuid(r, 1);
    int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    if (!(fma && osxsave && avx)) return 0;
    if ((_xgetbv(0) & 6) != 6) return 0;
    __cpuidex(r, 7, 0);
    return (r[1] >> 5) & 1;
#else
    return 0;
#endif
}
#endif /* CSM_BUILD_AVX2 */

const csm_kernel_table *csm_kernels_for(csm_isa isa)
{
    switch (isa) {
    case CSM_ISA_SCALAR: return &table_scalar;
#ifdef CSM_BUILD_AVX2
    case CSM_ISA_AVX2: return cpu_has_avx2_fma() ? &table_avx2 : NULL;
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
    const csm_kernel_table *best = csm_kernels_for(CSM_ISA_AVX2);
    if (!best) best = csm_kernels_for(CSM_ISA_NEON);
    if (!best) best = &table_scalar;
    const char *req = getenv("CSOFTMAX_ISA");
    if (req && *req) {
        const csm_kernel_table *t = NULL;
        if (strcmp(req, "scalar") == 0) t = csm_kernels_for(CSM_ISA_SCALAR);
        else if (strcmp(req, "avx2") == 0) t = csm_kernels_for(CSM_ISA_AVX2);
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
