/* Shared by the C kernels of the dense layer (soft_update.c,
 * attention.c), which are built together into one library per precision
 * with -Dreal=float or -Dreal=double, with OpenMP where the compiler has
 * it: each exported function splits its rows over `threads` threads of the
 * OpenMP runtime torch has loaded (the same pool, so no thread spins
 * against another). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
/* this thread's rows [lo, hi) of n, and its rank */
#define TEAM_ROWS(n)                                                       \
    const int rank = omp_get_thread_num(), team = omp_get_num_threads();   \
    const int64_t lo = (n) * rank / team, hi = (n) * (rank + 1) / team;
#else
#define TEAM_ROWS(n)                                                       \
    const int rank = 0;                                                    \
    const int64_t lo = 0, hi = (n);
#endif
