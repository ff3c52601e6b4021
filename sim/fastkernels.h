/* The elementwise kernels of the fast approximate matmul (fastkernels.c); their CPython binding
 * is fastkernels_module.c. Every pointer is to a C-contiguous array of the given element type. */
#ifndef CANNA_FASTKERNELS_H
#define CANNA_FASTKERNELS_H
#include <stdint.h>

enum { ROW_RISKY_NONZERO = 1, ROW_RISKY_ALL = 2 };

void canna_transform_checked(const uint32_t *w, int64_t rows, int64_t cols, int t, int dual,
                             uint32_t *mq, uint32_t *wn, int64_t *nq, int64_t *nn,
                             uint32_t *row_flags, int32_t *stats, uint32_t *colq, int64_t *nz,
                             uint32_t *nzc);
int64_t canna_scan_first(const uint32_t *a, int64_t rows, int64_t cols, int t, int dual,
                         const uint32_t *row_flags, const int32_t *stats, uint32_t *ma,
                         uint32_t *cnt_normal, uint32_t *cnt_q, int64_t *risky, int64_t cap);
int64_t canna_scan_first_quick(const uint32_t *a, int64_t rows, int64_t cols, const uint32_t *nq32,
                               int64_t n, int32_t q_lo, int32_t q_hi, int32_t b_e_max,
                               const uint32_t *nz32, int64_t *nonzero);
int64_t canna_scan_first_quick_t(const uint32_t *at, int64_t rows, int64_t cols, const uint32_t *nq32,
                                 int32_t q_lo, int32_t q_hi, int32_t b_e_max, const uint32_t *nz32,
                                 int64_t *nonzero);
void canna_sgd_transform(float *w, float *v, const float *g, double momentum, double lr,
                         int64_t rows, int64_t cols, int t, int dual, uint32_t *mq, uint32_t *wn,
                         int64_t *nq, int64_t *nn, uint32_t *row_flags, int32_t *stats,
                         uint32_t *colq, int64_t *nz, uint32_t *nzc);
int canna_transform_lean(const uint32_t *src, int64_t n, int t, uint32_t *dq, int64_t *out,
                         int with_mag);
void canna_magnitude_range(const uint32_t *x, int64_t n, uint32_t *mag_min1, uint32_t *mag_max);
int canna_lean_verdict(uint32_t mag_min1, uint32_t mag_max, int64_t k, int32_t q_lo, int32_t q_hi,
                       int32_t b_e_max);
uint32_t canna_max_finite_exponent(const uint32_t *x, int64_t n);
void canna_count_nonzero_finite(const uint32_t *x, int64_t rows, int64_t cols, int64_t *row_counts,
                                uint32_t *col_counts);
#endif
