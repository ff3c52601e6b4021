/* Elementwise kernels of the fast approximate matmul (sim/matmul.py), binary32 only.
 *
 * They do in one pass what sim/matmul.py's NumPy twins do in many: classify each element with
 * the CFPU hit rule and write the transformed operand, with the counts and exponent ranges that
 * the caller needs to prove every product of the following GEMM equals the golden product.
 * The NumPy twins are the reference; tests/sim/test_matmul.py checks these against them.
 *
 * The loops are written branch-free on uint32 lanes so that gcc vectorises them (check with
 * -fopt-info-vec); the rare risky elements are collected by a second, scalar pass.
 * Built on first use by sim/native.py (gcc -O3 -march=native) and cached; loaded with ctypes.
 */
#include <stdint.h>
#include <stdlib.h>

enum { ROW_RISKY_NONZERO = 1, ROW_RISKY_ALL = 2 };
#define EMPTY_LO 0xFFFFFFFFu   /* an empty exponent range has lo > hi */
#define EMPTY_HI 0u

static inline uint32_t min_u(uint32_t a, uint32_t b) { return a < b ? a : b; }
static inline uint32_t max_u(uint32_t a, uint32_t b) { return a > b ? a : b; }
#define MASK(cond) (0u - (uint32_t)(cond))

/* Transform one row of the checked operand. acc[0..8] accumulates:
 * qualifying count, normal non-qualifying count, unrepresentable-qualifying flag, subnormal flag,
 * non-finite flag, q_lo, q_hi (power-of-two exponents e + m1), n_lo, n_hi (exponents). */
static inline __attribute__((always_inline)) void
transform_row(const uint32_t *restrict src, uint32_t *restrict dq, uint32_t *restrict dn,
              int64_t cols, uint32_t sh, uint32_t ones, const int dual, uint32_t *acc)
{
    uint32_t cq = 0, cn = 0, unrep = 0, sub = 0, e_max = 0;
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
        cq += ok;
        unrep |= qual & (ok ^ 1u);
        e_max = max_u(e_max, e);                      /* 255: an inf or NaN, see below */
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
    const uint32_t nonfin = e_max == 255u;
    if (nonfin) {   /* rare: take the non-finite values out (zeros), off the vectorised loop */
        uint32_t *restrict d = dual ? dn : dq;
        for (int64_t j = 0; j < cols; j++)
            if (((src[j] >> 23) & 0xFFu) == 255u)
                d[j] = 0u;
    }
    acc[0] = cq; acc[1] = cn; acc[2] = unrep; acc[3] = sub; acc[4] = nonfin;
    acc[5] = q_lo; acc[6] = q_hi; acc[7] = n_lo; acc[8] = n_hi;
}

/* stats[0..3] = q_lo, q_hi, n_lo, n_hi over the whole operand (empty range: lo > hi). */
void canna_transform_checked(const uint32_t *w, int64_t rows, int64_t cols, int t, int dual,
                             uint32_t *mq, uint32_t *wn, int64_t *nq, int64_t *nn,
                             uint32_t *row_flags, int32_t *stats)
{
    const uint32_t sh = 22u - (uint32_t)t, ones = (1u << (t + 1)) - 1u;
    uint32_t q_lo = EMPTY_LO, q_hi = EMPTY_HI, n_lo = EMPTY_LO, n_hi = EMPTY_HI;
    for (int64_t k = 0; k < rows; k++) {
        uint32_t acc[9];
        if (dual)
            transform_row(w + k * cols, mq + k * cols, wn + k * cols, cols, sh, ones, 1, acc);
        else
            transform_row(w + k * cols, mq + k * cols, 0, cols, sh, ones, 0, acc);
        nq[k] = acc[0];
        nn[k] = acc[1];
        row_flags[k] = (acc[4] ? ROW_RISKY_ALL : 0u) |
                       ((acc[2] | (dual ? acc[3] : 0u)) ? ROW_RISKY_NONZERO : 0u);
        q_lo = min_u(q_lo, acc[5]); q_hi = max_u(q_hi, acc[6]);
        n_lo = min_u(n_lo, acc[7]); n_hi = max_u(n_hi, acc[8]);
    }
    stats[0] = q_lo == EMPTY_LO ? 1000 : (int32_t)q_lo;
    stats[1] = q_lo == EMPTY_LO ? -1000 : (int32_t)q_hi;
    stats[2] = n_lo == EMPTY_LO ? 1000 : (int32_t)n_lo;
    stats[3] = n_lo == EMPTY_LO ? -1000 : (int32_t)n_hi;
}

/* Is x (one element of the first operand, in column k) risky, i.e. a product the GEMM cannot
 * reproduce? Also returns whether it is a safe normal / safe qualifying element and, for dual,
 * its transform (risky elements: 0). All on
 * unsigned lanes: with exponents e and range ends in 0..255, "e + lo - 127 < 1" is
 * "e + lo < 128" and "e + hi - 127 > 254" is "e + hi > 381"; an empty range is passed as
 * lo = 128, hi = 0, which never flags anything. */
static inline __attribute__((always_inline)) uint32_t
classify_first(uint32_t x, uint32_t flags, uint32_t sh, uint32_t ones, const int dual,
               uint32_t q_lo, uint32_t q_hi, uint32_t n_lo, uint32_t n_hi,
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
    bad |= normal & (MASK(e + q_lo < 128u) | MASK(e + q_hi > 381u));
    bad |= qual & (MASK(pe >= 255u) | MASK(pe + n_lo < 128u) | MASK(pe + n_hi > 381u));
    *normal_out = normal & ~bad & 1u;
    *qual_out = qual & ~bad & 1u;
    *mx_out = ((((x & 0x80000000u) | (pe << 23)) & qual) | (x & ~qual)) & ~bad;
    return bad & 1u;
}

#define CLASSIFY_ARGS sh, ones, dual, q_lo, q_hi, n_lo, n_hi
#define RANGE_ARGS(stats) \
    const int any_q = (stats)[0] <= (stats)[1], any_n = (stats)[2] <= (stats)[3]; \
    const uint32_t q_lo = any_q ? (uint32_t)(stats)[0] : 128u, q_hi = any_q ? (uint32_t)(stats)[1] : 0u; \
    const uint32_t n_lo = any_n ? (uint32_t)(stats)[2] : 128u, n_hi = any_n ? (uint32_t)(stats)[3] : 0u

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

/* The common case of policy b in one light pass over the first operand: per-column counts of
 * nonzero elements, the exponent range of the nonzero elements, and whether any element is
 * subnormal or non-finite. When nothing is subnormal or non-finite and the range is safe
 * against the checked operand's, no element is risky and every nonzero element is normal, so
 * the hit count is sum_k nonzero[k] * nq[k], which it returns (the caller checks the
 * conditions in stats_out = {e_lo, e_hi, special} and otherwise runs canna_scan_first). */
int64_t canna_scan_first_quick(const uint32_t *a, int64_t rows, int64_t cols, const int64_t *nq,
                               uint32_t *stats_out)
{
    uint32_t *cnt = calloc((size_t)cols, sizeof *cnt);
    if (!cnt) {
        stats_out[2] = 1;   /* no memory: report "special" so the caller takes the full scan */
        return 0;
    }
    /* Over the nonzero elements only: a subnormal shows as e_lo == 0, an inf or NaN as
     * e_hi == 255 (both have a nonzero magnitude), so the loop needs no test of its own. */
    uint32_t e_lo = EMPTY_LO, e_hi = EMPTY_HI;
    for (int64_t i = 0; i < rows; i++) {
        const uint32_t *restrict src = a + i * cols;
        uint32_t *restrict c = cnt;
        for (int64_t k = 0; k < cols; k++) {
            uint32_t mag = src[k] & 0x7FFFFFFFu;
            uint32_t e = mag >> 23;
            uint32_t nonzero = MASK(mag != 0u);
            c[k] -= nonzero;                    /* + 1 for a nonzero element */
            e_lo = min_u(e_lo, e | ~nonzero);
            e_hi = max_u(e_hi, e);              /* a zero has e = 0 = EMPTY_HI */
        }
    }
    uint32_t special = (e_lo == 0u) | (e_hi == 255u);
    int64_t hits = 0;
    for (int64_t k = 0; k < cols; k++)
        hits += (int64_t)cnt[k] * nq[k];
    free(cnt);
    stats_out[0] = e_lo;
    stats_out[1] = e_hi;
    stats_out[2] = special;
    return hits;
}
