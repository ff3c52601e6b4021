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
int canna_lean_forward(const uint32_t *x, int64_t nx, const uint32_t *w, int64_t nw, int64_t k,
                       int t_w, int t_x, uint32_t *mw, uint32_t *mx, int64_t *ranges);
void canna_lean_backward(const uint32_t *g, int64_t n, const int64_t *ranges, int64_t k_w,
                         int64_t k_x, int want_w, int want_x, int *ok_w, int *ok_x);

/* What a C++ extension (canna/torch/lean_layers.cpp) takes of these kernels, through the
 * module's capsule "_fastkernels.lean_api" (one build of the kernels, no second copy). */
typedef struct {
    int (*lean_forward)(const uint32_t *, int64_t, const uint32_t *, int64_t, int64_t, int, int,
                        uint32_t *, uint32_t *, int64_t *);
    void (*lean_backward)(const uint32_t *, int64_t, const int64_t *, int64_t, int64_t, int, int,
                          int *, int *);
} CannaLeanApi;

uint32_t canna_max_finite_exponent(const uint32_t *x, int64_t n);
void canna_count_nonzero_finite(const uint32_t *x, int64_t rows, int64_t cols, int64_t *row_counts,
                                uint32_t *col_counts);
#endif
