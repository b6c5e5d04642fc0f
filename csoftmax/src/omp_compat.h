/* omp_compat.h -- OpenMP runtime calls that also compile without OpenMP. */
#ifndef CSOFTMAX_OMP_COMPAT_H
#define CSOFTMAX_OMP_COMPAT_H
#ifdef _OPENMP
#include <omp.h>
#define CSM_HAVE_OPENMP 1
#else
#define CSM_HAVE_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_procs(void) { return 1; }
static inline int omp_get_thread_limit(void) { return 1; }
#endif
#endif
