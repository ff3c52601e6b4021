/* Elementwise kernels of the fast approximate matmul (sim/matmul.py), binary32 only.
 *
 * They do in one pass what sim/matmul.py's NumPy twins do in many: classify each element with
 * the CFPU hit rule and write the transformed operand, with the counts and exponent ranges that
 * the caller needs to prove every product of the following GEMM equals the golden product.
 * The NumPy twins are the reference; tests/sim/test_matmul.py checks these against them.
 *
 * The loops are written branch-free on uint32 lanes so that gcc vectorises them (check with
 * -fopt-info-vec); the rare risky elements are collected by a second, scalar pass.
 * Built on first use by sim/native.py (gcc -O3 -march=native) and cached, together with
 * fastkernels_module.c, the CPython binding that sim/matmul.py imports.
 */
#include <string.h>
#include "fastkernels.h"

#define EMPTY_LO 0xFFFFFFFFu   /* an empty exponent range has lo > hi */
#define EMPTY_HI 0u

static inline uint32_t min_u(uint32_t a, uint32_t b) { return a < b ? a : b; }
static inline uint32_t max_u(uint32_t a, uint32_t b) { return a > b ? a : b; }
#define MASK(cond) (0u - (uint32_t)(cond))

/* Transform one row of the checked operand. acc[0..10] accumulates:
 * qualifying count, normal non-qualifying count, unrepresentable-qualifying flag, subnormal flag,
 * non-finite flag, q_lo, q_hi (power-of-two exponents e + m1), n_lo, n_hi (exponents), the
 * largest exponent among the finite elements and their powers of two (what the GEMMs see: the
 * non-finite elements become zeros), and the count of nonzero finite elements. colq and nzc
 * (NULL: not wanted) gain each column's qualifying and nonzero finite element. */
static inline __attribute__((always_inline)) void
transform_row(const uint32_t *restrict src, uint32_t *restrict dq, uint32_t *restrict dn,
              int64_t cols, uint32_t sh, uint32_t ones, const int dual, uint32_t *acc,
              uint32_t *restrict colq, uint32_t *restrict nzc)
{
    uint32_t cq = 0, cn = 0, unrep = 0, sub = 0, e_max = 0, nonfin = 0, nz = 0;
    uint32_t q_lo = EMPTY_LO, q_hi = EMPTY_HI, n_lo = EMPTY_LO, n_hi = EMPTY_HI;
    for (int64_t j = 0; j < cols; j++) {
        uint32_t x = src[j];
        uint32_t e = (x >> 23) & 0xFFu, f = x & 0x7FFFFFu, top = f >> sh;
        uint32_t normal = (e - 1u) < 254u;
        uint32_t qual = normal & ((top == 0u) | (top == ones));
        uint32_t pe = e + (f >> 22);                 /* exponent of the power of two */
        uint32_t ok = qual & (pe < 255u);             /* ... and it is representable */
        uint32_t nonq = normal & (ok ^ 1u);
        uint32_t okmask = 0u - ok, nonqmask = 0u - nonq;
        uint32_t pow2 = (x & 0x80000000u) | (pe << 23);
        if (dual) {
            dn[j] = x & ~okmask;
            dq[j] = pow2 & okmask;
        } else {
            dq[j] = (pow2 & okmask) | (x & ~okmask);
        }
        uint32_t nonzero = (uint32_t)((x & 0x7FFFFFFFu) != 0u) & (uint32_t)(e != 255u);
        cq += ok;
        nz += nonzero;
        if (colq)
            colq[j] += ok;
        if (nzc)
            nzc[j] += nonzero;
        unrep |= qual & (ok ^ 1u);
        nonfin |= (uint32_t)(e == 255u);              /* an inf or NaN, see below */
        e_max = max_u(e_max, e & ~MASK(e == 255u));
        /* masks, not conditionals: gcc vectorises these min/max reductions only so */
        q_lo = min_u(q_lo, pe | ~okmask);
        q_hi = max_u(q_hi, pe & okmask);
        if (dual) {   /* only dual multiplies the non-qualifying elements by a power of two */
            cn += nonq;
            sub |= (uint32_t)(e == 0u) & (uint32_t)(f != 0u);
            n_lo = min_u(n_lo, e | ~nonqmask);
            n_hi = max_u(n_hi, e & nonqmask);
        }
    }
    if (nonfin) {   /* rare: take the non-finite values out (zeros), off the vectorised loop */
        uint32_t *restrict d = dual ? dn : dq;
        for (int64_t j = 0; j < cols; j++)
            if (((src[j] >> 23) & 0xFFu) == 255u)
                d[j] = 0u;
    }
    acc[0] = cq; acc[1] = cn; acc[2] = unrep; acc[3] = sub; acc[4] = nonfin;
    acc[5] = q_lo; acc[6] = q_hi; acc[7] = n_lo; acc[8] = n_hi; acc[9] = max_u(e_max, q_hi);
    acc[10] = nz;
}

/* transform_row's common case in fewer operations per element (the transform is compute-bound,
 * so fewer operations are less time: docs/performance.md). It assumes the row holds no inf,
 * NaN or subnormal and no qualifying element whose power of two would overflow, detects when
 * that assumption fails and then returns 0, and the caller redoes the row with transform_row.
 * Under the assumption:
 * - a normal element is a nonzero exponent field;
 * - x + 2^22 carries f[22] = m1 into the exponent field, so (x + 0x400000) & 0xFF800000 is
 *   the power of two sign | (e + m1) << 23, and (x + 0x400000) << 1 holds e + m1 in its top
 *   byte (the ranges are tracked on that and shifted down once at the end);
 * - the t + 1 bits m1 and f[21 : 22-t] are all equal exactly when adding 2^sh (sh = 22 - t, the
 *   lowest of them) leaves bits 23-t .. 22 all zero: all ones carry out of bit 22, all zeros
 *   become a single one at bit sh. Bits below sh are untouched, so nothing carries into them
 *   from below; for t = 0 the test is empty and every element qualifies, as it should.
 * The exponent-field maximum shows an inf or NaN, the power-of-two maximum an overflow
 * (e + m1 = 255), and (dual only) the (magnitude - 1) minimum a subnormal (zeros wrap around to
 * the top). The nonzero counts cost nothing per element where the row has no zero exponent
 * field (a zero or, in policy b, a subnormal; a weight matrix rarely holds one): then the row's
 * count is cols, acc[11] = 1 and nzc is left for the caller to add 1 to every column (once, at
 * the end); else a second pass counts them.
 * upd (uw, uv, ug, m, lr): the row is first updated by SGD with momentum, in the same loop, and
 * the updated uw is the row transformed (src is then not read). */
static inline __attribute__((always_inline)) int
transform_row_common(const uint32_t *restrict src, uint32_t *restrict dq, uint32_t *restrict dn,
                     int64_t cols, uint32_t sh, uint32_t ones, const int dual, uint32_t *acc,
                     uint32_t *restrict colq, uint32_t *restrict nzc, const int upd,
                     float *restrict uw, float *restrict uv, const float *restrict ug, float m,
                     float lr)
{
    const uint32_t step = 1u << sh, upper = (ones - 1u) << sh;   /* bits 23-t .. 22 */
    uint32_t cq = 0, cn = 0, exp_max = 0, mag_min1 = EMPTY_LO, zero_exp = 0;
    uint32_t q_lo = EMPTY_LO, q_hi = EMPTY_HI, n_lo = EMPTY_LO, n_hi = EMPTY_HI;
    for (int64_t j = 0; j < cols; j++) {
        uint32_t x;
        if (upd) {   /* canna_sgd_transform's update, each operation rounded on its own */
            float vj = uv[j] * m;
            float stp = lr * ug[j];
            vj = vj - stp;
            uv[j] = vj;
            float wj = uw[j] + vj;
            uw[j] = wj;
            memcpy(&x, &wj, sizeof x);
        } else {
            x = src[j];
        }
        uint32_t exp = x & 0x7F800000u;
        uint32_t s = x + 0x400000u;
        uint32_t normal = ~MASK(exp == 0u);
        uint32_t qual = normal & MASK(((x + step) & upper) == 0u);
        uint32_t pe_top = s << 1;
        uint32_t pow2 = s & 0xFF800000u;
        if (dual) {
            dq[j] = pow2 & qual;
            dn[j] = x & ~qual;
        } else {
            dq[j] = (pow2 & qual) | (x & ~qual);
        }
        cq -= qual;                                   /* + 1 per qualifying element */
        if (colq)
            colq[j] -= qual;
        zero_exp |= ~normal;
        exp_max = max_u(exp_max, exp);
        q_lo = min_u(q_lo, pe_top | ~qual);
        q_hi = max_u(q_hi, pe_top & qual);
        if (dual) {
            uint32_t nonq = normal & ~qual;
            cn -= nonq;
            mag_min1 = min_u(mag_min1, (x & 0x7FFFFFFFu) - 1u);
            n_lo = min_u(n_lo, exp | ~nonq);
            n_hi = max_u(n_hi, exp & nonq);
        }
    }
    const uint32_t *restrict row = upd ? (const uint32_t *)uw : src;
    if (exp_max == 0x7F800000u || q_hi >= 0xFF000000u || (dual && mag_min1 < 0x7FFFFFu)) {
        for (int64_t j = 0; colq && j < cols; j++)   /* undo: transform_row recounts */
            colq[j] += MASK((row[j] & 0x7F800000u) != 0u) & MASK(((row[j] + step) & upper) == 0u);
        return 0;
    }
    uint32_t nz = (uint32_t)cols;   /* finite, since the row did not fail */
    acc[11] = zero_exp == 0u;
    if (zero_exp) {
        nz = 0;
        for (int64_t j = 0; j < cols; j++) {
            uint32_t nonzero = MASK((row[j] & 0x7FFFFFFFu) != 0u);
            nz -= nonzero;
            if (nzc)
                nzc[j] -= nonzero;
        }
    }
    acc[0] = cq; acc[1] = cn; acc[2] = 0; acc[3] = 0; acc[4] = 0;
    acc[5] = q_lo == EMPTY_LO ? EMPTY_LO : q_lo >> 24;
    acc[6] = q_hi >> 24;
    acc[7] = n_lo == EMPTY_LO ? EMPTY_LO : n_lo >> 23;
    acc[8] = n_hi >> 23;
    acc[9] = max_u(exp_max >> 23, q_hi >> 24);
    acc[10] = nz;
    return 1;
}

static void transform_rows(const uint32_t *w, int64_t rows, int64_t cols, int t, int dual,
                           uint32_t *mq, uint32_t *wn, int64_t *nq, int64_t *nn,
                           uint32_t *row_flags, int32_t *stats, uint32_t *colq, int64_t *nz,
                           uint32_t *nzc, float *upd_w, float *upd_v, const float *upd_g,
                           float m, float lr);

/* stats[0..3] = q_lo, q_hi, n_lo, n_hi over the whole operand (empty range: lo > hi);
 * stats[4] = the largest exponent field in the operands the GEMMs will see (the elements and
 * their powers of two; 255 when there is an inf or NaN), which bounds the GEMM's sums.
 * colq and nzc (policy b only; NULL: not wanted) receive the qualifying and the nonzero finite
 * count of every column, nz (NULL: not wanted) the nonzero finite count of every row: with
 * them the transform also serves the transposed operand and the nonzero product counts
 * (sim/matmul.py, Prepared.T and nonzero_rows). */
void canna_transform_checked(const uint32_t *w, int64_t rows, int64_t cols, int t, int dual,
                             uint32_t *mq, uint32_t *wn, int64_t *nq, int64_t *nn,
                             uint32_t *row_flags, int32_t *stats, uint32_t *colq, int64_t *nz,
                             uint32_t *nzc)
{
    transform_rows(w, rows, cols, t, dual, mq, wn, nq, nn, row_flags, stats, colq, nz, nzc,
                   0, 0, 0, 0.0f, 0.0f);
}

/* The SGD update of w (float32, rows x cols) with classic momentum, v = m v - lr g; w += v, each
 * multiply, subtract and add rounded on its own as NumPy's float32 in-place operations do (the
 * build contracts nothing into a fused multiply-add: -ffp-contract=off), and
 * canna_transform_checked of the new w, in one loop per row (transform_row_common's upd). */
void canna_sgd_transform(float *w, float *v, const float *g, double momentum, double lr,
                         int64_t rows, int64_t cols, int t, int dual, uint32_t *mq, uint32_t *wn,
                         int64_t *nq, int64_t *nn, uint32_t *row_flags, int32_t *stats,
                         uint32_t *colq, int64_t *nz, uint32_t *nzc)
{
    transform_rows((const uint32_t *)w, rows, cols, t, dual, mq, wn, nq, nn, row_flags, stats,
                   colq, nz, nzc, w, v, g, (float)momentum, (float)lr);
}

static void transform_rows(const uint32_t *w, int64_t rows, int64_t cols, int t, int dual,
                           uint32_t *mq, uint32_t *wn, int64_t *nq, int64_t *nn,
                           uint32_t *row_flags, int32_t *stats, uint32_t *colq, int64_t *nz,
                           uint32_t *nzc, float *upd_w, float *upd_v, const float *upd_g,
                           float m, float lr)
{
    if (dual)
        colq = nzc = 0;
    for (int64_t j = 0; colq && j < cols; j++)
        colq[j] = 0u;
    for (int64_t j = 0; nzc && j < cols; j++)
        nzc[j] = 0u;
    const uint32_t sh = 22u - (uint32_t)t, ones = (1u << (t + 1)) - 1u;
    uint32_t q_lo = EMPTY_LO, q_hi = EMPTY_HI, n_lo = EMPTY_LO, n_hi = EMPTY_HI, e_max = 0;
    uint32_t rows_without_zero = 0;   /* rows whose nonzero counts nzc still lacks (all columns) */
    for (int64_t k = 0; k < rows; k++) {
        uint32_t acc[12];
        const uint32_t *src = w + k * cols;
        uint32_t *dq = mq + k * cols, *dn = dual ? wn + k * cols : 0;
        float *uw = upd_w ? upd_w + k * cols : 0, *uv = upd_w ? upd_v + k * cols : 0;
        const float *ug = upd_w ? upd_g + k * cols : 0;
        acc[11] = 0;
#define ROW(DUAL, COLQ, NZC)                                                                     \
        if (!(upd_w ? transform_row_common(0, dq, dn, cols, sh, ones, DUAL, acc, COLQ, NZC, 1,    \
                                           uw, uv, ug, m, lr)                                     \
                    : transform_row_common(src, dq, dn, cols, sh, ones, DUAL, acc, COLQ, NZC, 0,  \
                                           0, 0, 0, 0.0f, 0.0f)))                                 \
            transform_row(src, dq, dn, cols, sh, ones, DUAL, acc, COLQ, NZC)
        if (dual) {
            ROW(1, 0, 0);
        } else if (colq && nzc) {
            ROW(0, colq, nzc);
        } else if (colq) {
            ROW(0, colq, 0);
        } else {
            ROW(0, 0, 0);
        }
#undef ROW
        rows_without_zero += acc[11];
        if (nz)
            nz[k] = acc[10];
        nq[k] = acc[0];
        nn[k] = acc[1];
        row_flags[k] = (acc[4] ? ROW_RISKY_ALL : 0u) |
                       ((acc[2] | (dual ? acc[3] : 0u)) ? ROW_RISKY_NONZERO : 0u);
        q_lo = min_u(q_lo, acc[5]); q_hi = max_u(q_hi, acc[6]);
        n_lo = min_u(n_lo, acc[7]); n_hi = max_u(n_hi, acc[8]);
        e_max = max_u(e_max, acc[9]);
    }
    for (int64_t j = 0; nzc && rows_without_zero && j < cols; j++)
        nzc[j] += rows_without_zero;
    stats[0] = q_lo == EMPTY_LO ? 1000 : (int32_t)q_lo;
    stats[1] = q_lo == EMPTY_LO ? -1000 : (int32_t)q_hi;
    stats[2] = n_lo == EMPTY_LO ? 1000 : (int32_t)n_lo;
    stats[3] = n_lo == EMPTY_LO ? -1000 : (int32_t)n_hi;
    stats[4] = (int32_t)e_max;
}

/* Is x (one element of the first operand, in column k) risky, i.e. a product the GEMM cannot
 * reproduce? Also returns whether it is a safe normal / safe qualifying element and, for dual,
 * its transform (risky elements: 0). All on
 * unsigned lanes: with exponents e and range ends in 0..255, "e + lo - 127 < 1" is
 * "e + lo < 128" and "e + hi - 127 > 254" is "e + hi > 381"; an empty range is passed as
 * lo = 128, hi = 0, which never flags anything. A product that may overflow is risky too (a GEMM
 * that fuses it into the add would not round it to inf): |x| < 2^(pe - 126) and every element
 * the GEMMs see < 2^(e_max - 126), so no product reaches 2^127 while pe + e_max <= 379. */
static inline __attribute__((always_inline)) uint32_t
classify_first(uint32_t x, uint32_t flags, uint32_t sh, uint32_t ones, const int dual,
               uint32_t q_lo, uint32_t q_hi, uint32_t n_lo, uint32_t n_hi, uint32_t e_max,
               uint32_t *normal_out, uint32_t *qual_out, uint32_t *mx_out)
{
    /* All-ones / all-zero masks rather than 0/1 truth values: gcc 12 vectorises only these. */
    uint32_t e = (x >> 23) & 0xFFu, f = x & 0x7FFFFFu, top = f >> sh;
    uint32_t nonzero = MASK((x & 0x7FFFFFFFu) != 0u);
    uint32_t normal = MASK((e - 1u) < 254u);
    uint32_t qual = dual ? (normal & (MASK(top == 0u) | MASK(top == ones))) : 0u;
    uint32_t pe = e + (f >> 22);
    uint32_t bad = MASK((flags & ROW_RISKY_ALL) != 0u) | (MASK((flags & ROW_RISKY_NONZERO) != 0u) & nonzero);
    bad |= ~normal & nonzero;                                            /* subnormal, inf, NaN */
    bad |= normal & (MASK(e + q_lo < 128u) | MASK(e + q_hi > 381u) | MASK(pe + e_max > 379u));
    bad |= qual & (MASK(pe >= 255u) | MASK(pe + n_lo < 128u) | MASK(pe + n_hi > 381u));
    *normal_out = normal & ~bad & 1u;
    *qual_out = qual & ~bad & 1u;
    *mx_out = ((((x & 0x80000000u) | (pe << 23)) & qual) | (x & ~qual)) & ~bad;
    return bad & 1u;
}

#define CLASSIFY_ARGS sh, ones, dual, q_lo, q_hi, n_lo, n_hi, e_max
#define RANGE_ARGS(stats) \
    const int any_q = (stats)[0] <= (stats)[1], any_n = (stats)[2] <= (stats)[3]; \
    const uint32_t q_lo = any_q ? (uint32_t)(stats)[0] : 128u, q_hi = any_q ? (uint32_t)(stats)[1] : 0u; \
    const uint32_t n_lo = any_n ? (uint32_t)(stats)[2] : 128u, n_hi = any_n ? (uint32_t)(stats)[3] : 0u; \
    const uint32_t e_max = (uint32_t)(stats)[4]

static inline __attribute__((always_inline)) int64_t
scan_rows(const uint32_t *restrict a, int64_t rows, int64_t cols, uint32_t sh, uint32_t ones,
          const int dual, const uint32_t *restrict row_flags, const int32_t *stats,
          uint32_t *restrict ma, uint32_t *restrict cnt_normal, uint32_t *restrict cnt_q)
{
    RANGE_ARGS(stats);
    int64_t count = 0;
    for (int64_t i = 0; i < rows; i++) {
        const uint32_t *restrict src = a + i * cols;
        uint32_t *restrict dst = dual ? ma + i * cols : 0;
        uint32_t row_bad = 0;
        for (int64_t k = 0; k < cols; k++) {
            uint32_t normal, qual, mx;
            uint32_t bad = classify_first(src[k], row_flags[k], CLASSIFY_ARGS, &normal, &qual, &mx);
            cnt_normal[k] += normal;
            cnt_q[k] += qual;
            row_bad += bad;
            if (dual)
                dst[k] = mx;
        }
        count += row_bad;
    }
    return count;
}

/* Scan the first operand a (rows x cols; column index = k of the matmul). Returns the number of
 * risky elements (products the GEMM cannot reproduce; the caller computes them with the golden
 * model) and writes their flat indices to risky[] up to `cap`. With dual, writes a's transform
 * (qualifying -> power of two, risky -> 0) to ma. cnt_normal[k] / cnt_q[k] count the safe
 * normal / safe qualifying elements of column k and must be zeroed by the caller. */
int64_t canna_scan_first(const uint32_t *a, int64_t rows, int64_t cols, int t, int dual,
                         const uint32_t *row_flags, const int32_t *stats, uint32_t *ma,
                         uint32_t *cnt_normal, uint32_t *cnt_q, int64_t *risky, int64_t cap)
{
    const uint32_t sh = 22u - (uint32_t)t, ones = (1u << (t + 1)) - 1u;
    int64_t count = dual ? scan_rows(a, rows, cols, sh, ones, 1, row_flags, stats, ma, cnt_normal, cnt_q)
                         : scan_rows(a, rows, cols, sh, ones, 0, row_flags, stats, ma, cnt_normal, cnt_q);
    if (count == 0)
        return 0;
    /* Second, scalar pass: collect the indices of the (rare) risky elements. */
    RANGE_ARGS(stats);
    int64_t found = 0;
    for (int64_t i = 0; i < rows && found < cap; i++) {
        for (int64_t k = 0; k < cols && found < cap; k++) {
            uint32_t normal, qual, mx;
            if (classify_first(a[i * cols + k], row_flags[k], CLASSIFY_ARGS, &normal, &qual, &mx))
                risky[found++] = i * cols + k;
        }
    }
    return count;
}

/* The common case of policy b in one light pass over the first operand. It returns the hit
 * count when
 * - no element is subnormal or non-finite and the exponent range [e_lo, e_hi] of the nonzero
 *   elements is safe against the range [q_lo, q_hi] of the checked operand's powers of two
 *   (empty when q_lo > q_hi): then no element is risky, every nonzero element is normal, and
 *   the hit count is the sum over rows of sum_k [a_ik != 0] * nq[k]; and
 * - no sum of the GEMM can overflow, so that the caller need not mask floating-point warnings
 *   (which costs more than this whole pass): every |a| < 2^(e_hi - 126) and every element of
 *   the checked operand |b| < 2^(b_e_max - 126), so a K-term sum of products, in any order and
 *   with any rounding (K u < 1/2 at most doubles it), stays below
 *   2^(ceil(log2 K) + e_hi + b_e_max - 251) <= 2^126 when e_hi + b_e_max + ceil(log2 K) <= 377.
 *   Without overflow there is no inf, hence no invalid operation either.
 * Otherwise it returns -1 and the caller takes the general path (canna_scan_first).
 * nq32 holds nq (each <= n, the columns of the checked operand) as uint32: the per-row sums run
 * on 32-bit lanes, over chunks short enough that they cannot overflow. Magnitudes rather than
 * exponents: min(mag - 1) skips zeros (they wrap to the top) and max(mag) needs no test. */
static int64_t quick_verdict(int64_t hits, uint32_t mag_min1, uint32_t mag_max, int64_t cols,
                             int32_t q_lo, int32_t q_hi, int32_t b_e_max);

static inline __attribute__((always_inline)) int64_t
scan_quick(const uint32_t *a, int64_t rows, int64_t cols, const uint32_t *nq32, int64_t n,
           int32_t q_lo, int32_t q_hi, int32_t b_e_max, const uint32_t *nz32, int64_t *nonzero)
{
    if (n > (int64_t)0xFFFFFFFFu)                 /* counts would not fit the 32-bit lanes */
        return -1;
    const int64_t chunk = n > 0 ? (int64_t)(0xFFFFFFFFu / (uint64_t)n) : cols;   /* >= 1 */
    uint32_t mag_min1 = EMPTY_LO, mag_max = 0;
    int64_t hits = 0, nonz = 0;
    for (int64_t i = 0; i < rows; i++) {
        const uint32_t *restrict src = a + i * cols;
        for (int64_t k0 = 0; k0 < cols; k0 += chunk) {
            const int64_t k1 = cols - k0 < chunk ? cols : k0 + chunk;
            uint32_t h = 0, z = 0;
            for (int64_t k = k0; k < k1; k++) {
                uint32_t mag = src[k] & 0x7FFFFFFFu;
                mag_min1 = min_u(mag_min1, mag - 1u);
                mag_max = max_u(mag_max, mag);
                h += nq32[k] & MASK(mag != 0u);
                if (nz32)
                    z += nz32[k] & MASK(mag != 0u);
            }
            hits += h;
            nonz += z;
        }
    }
    if (nonzero)
        *nonzero = nonz;
    return quick_verdict(hits, mag_min1, mag_max, cols, q_lo, q_hi, b_e_max);
}

/* scan_quick's answer from the first operand's magnitude range (min(mag - 1), max(mag)) over a
 * matmul of inner size cols: the hit count, or -1 where the lean path does not apply. */
static int64_t quick_verdict(int64_t hits, uint32_t mag_min1, uint32_t mag_max, int64_t cols,
                             int32_t q_lo, int32_t q_hi, int32_t b_e_max)
{
    if (mag_min1 == EMPTY_LO)                     /* all zeros */
        return hits;
    const int32_t e_lo = (int32_t)((mag_min1 + 1u) >> 23), e_hi = (int32_t)(mag_max >> 23);
    if (e_lo == 0 || e_hi == 255)                 /* a subnormal, inf or NaN */
        return -1;
    if (q_lo <= q_hi && (e_lo + q_lo - 127 < 1 || e_hi + q_hi - 127 > 254))
        return -1;                                /* a hit's exponent may leave the range */
    int32_t log2_k = 0;
    while (log2_k < 63 && ((int64_t)1 << log2_k) < cols)
        log2_k++;
    if (log2_k > 22 || e_hi + b_e_max + log2_k > 377)
        return -1;                                /* a sum may overflow */
    return hits;
}

/* nz32 (NULL: not wanted) holds the checked operand's nonzero finite count per row (each <= n);
 * *nonzero then receives the products of two nonzero finite operands: on the lean path every
 * element of a is finite, so that is the sum of nz32[k] over its nonzero elements. */
int64_t canna_scan_first_quick(const uint32_t *a, int64_t rows, int64_t cols, const uint32_t *nq32,
                               int64_t n, int32_t q_lo, int32_t q_hi, int32_t b_e_max,
                               const uint32_t *nz32, int64_t *nonzero)
{
    if (nz32)
        return scan_quick(a, rows, cols, nq32, n, q_lo, q_hi, b_e_max, nz32, nonzero);
    return scan_quick(a, rows, cols, nq32, n, q_lo, q_hi, b_e_max, 0, nonzero);
}

/* scan_quick for a first operand given as its transpose at (C-contiguous, rows = the matmul's
 * inner size K, cols = the first operand's rows M: the weight gradient's delta.T read as delta,
 * without a transposing copy). Row k of at holds column k of a, so its nonzero elements each
 * meet nq32[k] qualifying and nz32[k] nonzero finite elements of the checked operand's row k. */
static inline __attribute__((always_inline)) int64_t
scan_quick_t(const uint32_t *at, int64_t rows, int64_t cols, const uint32_t *nq32, int32_t q_lo,
             int32_t q_hi, int32_t b_e_max, const uint32_t *nz32, int64_t *nonzero)
{
    uint32_t mag_min1 = EMPTY_LO, mag_max = 0;
    int64_t hits = 0, nonz = 0;
    for (int64_t k = 0; k < rows; k++) {
        const uint32_t *restrict src = at + k * cols;
        int64_t c = 0;
        for (int64_t i0 = 0; i0 < cols; i0 += 0x7FFFFFFF) {   /* 32-bit lanes for the count */
            const int64_t i1 = cols - i0 < 0x7FFFFFFF ? cols : i0 + 0x7FFFFFFF;
            uint32_t ci = 0;
            for (int64_t i = i0; i < i1; i++) {
                uint32_t mag = src[i] & 0x7FFFFFFFu;
                mag_min1 = min_u(mag_min1, mag - 1u);
                mag_max = max_u(mag_max, mag);
                ci -= MASK(mag != 0u);
            }
            c += ci;
        }
        hits += c * (int64_t)nq32[k];
        if (nz32)
            nonz += c * (int64_t)nz32[k];
    }
    if (nonzero)
        *nonzero = nonz;
    return quick_verdict(hits, mag_min1, mag_max, rows, q_lo, q_hi, b_e_max);
}

int64_t canna_scan_first_quick_t(const uint32_t *at, int64_t rows, int64_t cols, const uint32_t *nq32,
                                 int32_t q_lo, int32_t q_hi, int32_t b_e_max, const uint32_t *nz32,
                                 int64_t *nonzero)
{
    if (nz32)
        return scan_quick_t(at, rows, cols, nq32, q_lo, q_hi, b_e_max, nz32, nonzero);
    return scan_quick_t(at, rows, cols, nq32, q_lo, q_hi, b_e_max, 0, nonzero);
}

/* The lean routes' transform (canna.torch): policy b's transform of n elements (any shape: it
 * is elementwise), with neither counts nor row facts, in transform_row_common's operations (see
 * there) less its counts. out[0..2] = the powers of two's exponent range (1000, -1000 when there
 * is none) and the largest exponent the GEMM sees (as stats[4]); with_mag: out[3..4] = the
 * magnitude range min(|x| - 1), max(|x|) of the elements themselves (what quick_verdict takes
 * of a first operand: the same operand may be one in another phase). Returns 0 where
 * transform_checked would flag a row (an inf or NaN, or a power of two that overflows): the
 * caller then takes the general path. */
static inline __attribute__((always_inline)) int
transform_lean(const uint32_t *restrict src, int64_t n, int t, uint32_t *restrict dq, int64_t *out,
               const int with_mag)
{
    const uint32_t sh = 22u - (uint32_t)t, ones = (1u << (t + 1)) - 1u;
    const uint32_t step = 1u << sh, upper = (ones - 1u) << sh;
    uint32_t mag_max = 0, mag_min1 = EMPTY_LO, q_lo = EMPTY_LO, q_hi = EMPTY_HI;
    for (int64_t j = 0; j < n; j++) {
        uint32_t x = src[j];
        uint32_t mag = x & 0x7FFFFFFFu;
        uint32_t s = x + 0x400000u;
        uint32_t qual = ~MASK((x & 0x7F800000u) == 0u) & MASK(((x + step) & upper) == 0u);
        uint32_t pe_top = s << 1;
        dq[j] = ((s & 0xFF800000u) & qual) | (x & ~qual);
        mag_max = max_u(mag_max, mag);
        if (with_mag)
            mag_min1 = min_u(mag_min1, mag - 1u);
        q_lo = min_u(q_lo, pe_top | ~qual);
        q_hi = max_u(q_hi, pe_top & qual);
    }
    if (mag_max >= 0x7F800000u || q_hi >= 0xFF000000u)
        return 0;
    out[0] = q_lo == EMPTY_LO ? 1000 : (int64_t)(q_lo >> 24);
    out[1] = q_lo == EMPTY_LO ? -1000 : (int64_t)(q_hi >> 24);
    out[2] = (int64_t)max_u(mag_max >> 23, q_hi >> 24);
    if (with_mag) {
        out[3] = (int64_t)mag_min1;
        out[4] = (int64_t)mag_max;
    }
    return 1;
}

int canna_transform_lean(const uint32_t *src, int64_t n, int t, uint32_t *dq, int64_t *out, int with_mag)
{
    return with_mag ? transform_lean(src, n, t, dq, out, 1) : transform_lean(src, n, t, dq, out, 0);
}

/* min(|x| - 1) and max(|x|) over n binary32 patterns: a first operand's part of quick_verdict,
 * in any order (a transposed view is the same elements). */
void canna_magnitude_range(const uint32_t *x, int64_t n, uint32_t *mag_min1, uint32_t *mag_max)
{
    uint32_t lo = EMPTY_LO, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t mag = x[i] & 0x7FFFFFFFu;
        lo = min_u(lo, mag - 1u);
        hi = max_u(hi, mag);
    }
    *mag_min1 = lo;
    *mag_max = hi;
}

/* quick_verdict without the hit count: whether the lean path serves a matmul of inner size k
 * whose first operand has the magnitude range (mag_min1, mag_max) and whose checked operand
 * the ranges q_lo, q_hi, b_e_max. */
int canna_lean_verdict(uint32_t mag_min1, uint32_t mag_max, int64_t k, int32_t q_lo, int32_t q_hi,
                       int32_t b_e_max)
{
    return quick_verdict(0, mag_min1, mag_max, k, q_lo, q_hi, b_e_max) >= 0;
}

/* canna.torch's lean forward of the matmul x @ M(w) of inner size k, w checked (nx, nw: the
 * operands' element counts): w's transform (t_w) into mw and, where mx is not NULL, x's (t_x,
 * for the weight gradient, while x is in cache) into mx, else only x's magnitude range; then the
 * forward verdict. ranges = (w's pow2_lo, pow2_hi, e_max, x's pow2_lo, pow2_hi, e_max; x's are
 * 1000, -1000, 0 without mx). Returns 0 where a transform or the verdict declines. */
int canna_lean_forward(const uint32_t *x, int64_t nx, const uint32_t *w, int64_t nw, int64_t k,
                       int t_w, int t_x, uint32_t *mw, uint32_t *mx, int64_t *ranges)
{
    int64_t ow[5], ox[5] = {1000, -1000, 0, 0, 0};
    int served = canna_transform_lean(w, nw, t_w, mw, ow, 0);
    if (served && mx) {
        served = canna_transform_lean(x, nx, t_x, mx, ox, 1);
    } else if (served) {
        uint32_t lo, hi;
        canna_magnitude_range(x, nx, &lo, &hi);
        ox[3] = lo;
        ox[4] = hi;
    }
    served = served && canna_lean_verdict((uint32_t)ox[3], (uint32_t)ox[4], k, (int32_t)ow[0],
                                          (int32_t)ow[1], (int32_t)ow[2]);
    for (int i = 0; i < 3; i++) {
        ranges[i] = ow[i];
        ranges[3 + i] = ox[i];
    }
    return served;
}

/* The lean backward phases' verdicts from one pass over the error g (n elements): the weight
 * gradient against M(x) (inner size k_w) and the backward error against M(w) (inner size k_x),
 * ranges as canna_lean_forward gives them. */
void canna_lean_backward(const uint32_t *g, int64_t n, const int64_t *ranges, int64_t k_w,
                         int64_t k_x, int want_w, int want_x, int *ok_w, int *ok_x)
{
    uint32_t lo, hi;
    canna_magnitude_range(g, n, &lo, &hi);
    *ok_w = want_w && canna_lean_verdict(lo, hi, k_w, (int32_t)ranges[3], (int32_t)ranges[4],
                                         (int32_t)ranges[5]);
    *ok_x = want_x && canna_lean_verdict(lo, hi, k_x, (int32_t)ranges[0], (int32_t)ranges[1],
                                         (int32_t)ranges[2]);
}

/* The largest exponent field among the finite ones of n binary32 bit patterns (0 when none). */
uint32_t canna_max_finite_exponent(const uint32_t *x, int64_t n)
{
    uint32_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t e = x[i] & 0x7F800000u;
        m = max_u(m, e & ~MASK(e == 0x7F800000u));
    }
    return m >> 23;
}

/* Per-row and per-column counts of the nonzero finite elements of a rows x cols matrix of
 * binary32 patterns (either output NULL: not wanted; both zeroed first): the operands a product
 * is not bypassed for. 0 < |x| < inf is (x << 1) - 2 < 0xFEFFFFFE on uint32 (zero wraps to the top). */
void canna_count_nonzero_finite(const uint32_t *x, int64_t rows, int64_t cols, int64_t *row_counts,
                                uint32_t *col_counts)
{
    for (int64_t j = 0; col_counts && j < cols; j++)
        col_counts[j] = 0u;
    for (int64_t i = 0; i < rows; i++) {
        const uint32_t *restrict src = x + i * cols;
        uint32_t c = 0;
        if (col_counts) {
            uint32_t *restrict cc = col_counts;
            for (int64_t j = 0; j < cols; j++) {
                uint32_t nz = MASK((src[j] << 1) - 2u < 0xFEFFFFFEu);
                c -= nz;
                cc[j] -= nz;
            }
        } else {
            for (int64_t j = 0; j < cols; j++)
                c -= MASK((src[j] << 1) - 2u < 0xFEFFFFFEu);
        }
        if (row_counts)
            row_counts[i] = c;
    }
}
