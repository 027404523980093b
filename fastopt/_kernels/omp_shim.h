/* OpenMP where the compiler has it; a serial stand-in where it does not, so the same
   Cython source builds either way and fastopt can report which one it got. */
#ifndef FASTOPT_OMP_SHIM_H
#define FASTOPT_OMP_SHIM_H
#ifdef _OPENMP
#include <omp.h>
#define FASTOPT_OPENMP 1
#else
#define FASTOPT_OPENMP 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_num_threads(void) { return 1; }
static inline void omp_set_num_threads(int n) { (void)n; }
static inline double omp_get_wtime(void) { return 0.0; }
#endif

/* Team size of the last parallel step, written once per step by the thread that runs its
   first piece: lets the tests see that threadpoolctl, OMP_NUM_THREADS and set_num_threads
   reach the parallel region itself, not only the thread-count setting. */
static int fastopt_last_team_size = 0;
static inline void fastopt_note_team_size(void) { fastopt_last_team_size = omp_get_num_threads(); }
#endif
