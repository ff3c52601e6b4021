/* Cycle and energy accounting of Y = A @ B on the lane array without computing Y
 * (canna.sim.accounting): the counts canna.sim.lanes.run_lane_array reports, from bitsets.
 *
 * The specification is the NumPy golden lane model (sim/lanes.py, sim/golden.py); the C twin of
 * the CFPU (sim/lanes_native.c) states the same hit rule in C. This file never multiplies or adds
 * a float: it only decides, for every product A[i,k] * B[k,j], whether it is *fast* (1 cycle: a
 * hit or a bypass) or *exact* (exact_cycles cycles), and counts.
 *
 * Classes. Every element is classified by its own bits: nz = nonzero finite, s = subnormal,
 * n = normal, q = normal and golden.qualifies(fraction, t). A product is a bypass when an
 * operand is zero, infinite or NaN (not nz). Within the nz x nz products:
 *   policy b:  exact = sA & nzB  |  nA & (nzB & ~qB)
 *   dual:      exact = sA & nzB  |  nA & sB  |  (nA & ~qA) & (nB & ~qB)
 *   exact mode: exact = nzA & nzB
 * *provided* every hit's result exponent e_other + e_x - 127 + m1 lies in 1..254. Whether it
 * can leave that range is decided per k from exponent ranges (A's column k against B's row k,
 * as canna.sim.matmul does globally); the 64-bit words of k that hold such a k are evaluated
 * product by product with the full rule (fast1 below), the others by the class formula.
 *
 * Bitsets. Classes of A rows and B columns are packed over k, 64 k per word (bits k >= K are 0):
 *   acls[c][i][w]      A classes, row-major (M x W words per class)
 *   bcls[c][w][j]      B classes, word-major (W x npad words per class; columns >= N are 0)
 * exact_count(i,j) = sum_w popcount(OR_pairs (A_ca[i][w] & B_cb[w][j])), a popcount GEMM.
 * base_count(i,j)  = sum_w popcount(nzA[i][w] & nzB[w][j]) (the products that are not bypassed);
 * hits = base - exact, bypassed = K - base.
 *
 * Cycles of a tile (lanes with outputs f0 .. f1-1, flat row-major): a valid lane's product is
 * 1 cycle when fast, E when exact; padding lanes cost nothing.
 *   decoupled  = max_l sum_k lat = K + (E-1) * max_l exact_count(l)
 *   lockstep   = sum_k max_l lat = K + (E-1) * popcount(OR_l exact_bits(l))
 * and the same with base for the all-exact baseline (fast = bypass only). The OR over a tile's
 * lanes factors per row segment of the tile: OR_{j in seg} (a_i & b_j) = a_i & OR_{j in seg} b_j,
 * so range-OR tables of B's columns answer it in W words per segment: with the columns cut into
 * blocks of `lanes`, the ORs from each column to the end of its block and from the start of its
 * block to it (van Herk/Gil-Werman); a segment has at most `lanes` columns, so it meets at most
 * two blocks and is the OR of two table rows.
 *
 * The CFPU without zero skipping (no-skip: fast = hit only) and the plain array (every product
 * E cycles). Plain = tiles * K * E. No-skip is the same algebra with the bypass removed: a
 * product is slow when it is not a hit, i.e. exact | bypass, so per tile
 *   lockstep   = K + (E-1) * popcount(OR_l (exact_bits(l) | bypass_bits(l)))
 *   decoupled  = K + (E-1) * max_l (K - hits(l)),  hits(l) = base_count(l) - exact_count(l)
 * (in exact mode both are plain). With nz' = all ones over the valid k and s' = not normal,
 * the class formula above turns into exact' = ~hit (b: ~(nA & qB), dual: ~(nA & nB & (qA | qB)));
 * evaluated as exact | bypass it shares every pass of the CFPU's count. The OR of the bypass
 * bits over a tile's lanes is OR_seg (zA[r] | OR_{j in seg} zB[j]) with z = ~nz over the valid k:
 * zA from A's nz rows, zB one more B class with range-OR tables (packed only when B has a
 * zero/inf/NaN), so the lockstep count is a few more words ORed into the exact terms of every
 * tile and popcounted again; without any zero/inf/NaN operand no-skip is the CFPU's own count.
 * The decoupled count reuses the exact and base counts per output: no GEMM is added. In the
 * words evaluated product by product the no-skip bits are the full rule's "not a hit".
 *
 * Narrow K (at most NARROW_W words, SIMD build): narrow() below counts the same sums with 8
 * tiles of a row per vector and a loop over the lanes (see there).
 *
 * Built by canna.sim.native.build_shared with -march=native: AVX-512 (F, BW, VL, VPOPCNTDQ)
 * where the CPU has it, portable scalar C otherwise (or with -DCANNA_ACC_SCALAR).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VPOPCNTDQ__) && !defined(CANNA_ACC_SCALAR)
#define ACC_SIMD 1
#include <immintrin.h>
#else
#define ACC_SIMD 0
#endif

#define INLINE static inline __attribute__((always_inline))
#define EMPTY_LO 1000
#define EMPTY_HI (-1000)
/* Words from one B class to the next: W x npad, padded to 168 mod 512 words (1344 mod 4096
 * bytes), so that the packer's loads of one class never sit a multiple of 4 KiB after recent
 * stores to another (4K aliasing: the loads would wait on them). canna_acc_bstride tells
 * canna.sim.accounting the layout to allocate. */
#define BSTRIDE(W, npad) ((W) * (npad) + ((168 - ((W) * (npad)) % 512) + 512) % 512)

typedef struct { int32_t enabled, t, dual; } cfg_t;
/* 16-bit views of the 64-bit class words (the SIMD packers store 16-lane masks into them). */
typedef uint16_t __attribute__((may_alias)) u16_alias;

int canna_acc_simd(void) { return ACC_SIMD; }
int64_t canna_acc_bstride(int64_t W, int64_t npad) { return BSTRIDE(W, npad); }

/* ---- the hit rule, product by product (golden.mul_bits' hit mask and lanes' bypass) ---- */

INLINE int special1(uint32_t x) {
    return ((x >> 23) & 0xFF) == 0xFF || (x & 0x7FFFFFFFu) == 0;
}

/* The valid k bits of word w (k < K). */
INLINE uint64_t valid_word(int64_t K, int64_t w) {
    const int64_t left = K - 64 * w;
    return left >= 64 ? ~0ull : (1ull << left) - 1ull;
}

INLINE int qual1(uint32_t frac, int t) {
    uint32_t top = frac >> (22 - t);
    return top == 0 || top == ((1u << (t + 1)) - 1u);
}

enum { KIND_HIT = 0, KIND_BYPASS = 1, KIND_EXACT = 2 };

/* How a * b retires under configuration c: a hit (1 cycle), a bypass (a zero/inf/NaN operand:
 * 1 cycle with zero skipping) or an exact product (exact_cycles). */
INLINE int kind1(uint32_t a, uint32_t b, const cfg_t* c) {
    if (special1(a) || special1(b)) return KIND_BYPASS;
    if (!c->enabled) return KIND_EXACT;
    int32_t ea = (a >> 23) & 0xFF, eb = (b >> 23) & 0xFF;
    if (ea == 0 || eb == 0) return KIND_EXACT;        /* subnormal: exact */
    uint32_t fa = a & 0x7FFFFF, fb = b & 0x7FFFFF;
    int qb = qual1(fb, c->t);
    int use_b = c->dual ? qb : 1;
    int q = c->dual ? (qb || qual1(fa, c->t)) : qb;
    if (!q) return KIND_EXACT;
    int32_t e_x = use_b ? eb : ea, e_o = use_b ? ea : eb;
    int32_t m1 = (int32_t)((use_b ? fb : fa) >> 22);
    int32_t e = e_o + e_x - 127 + m1;
    return (e >= 1 && e <= 254) ? KIND_HIT : KIND_EXACT;
}

/* Element-wise: out[i] = 1 when a[i] * b[i] takes exact_cycles (neither hit nor bypass). */
void canna_acc_exact_mask(int64_t n, const uint32_t* a, const uint32_t* b, int32_t enabled,
                          int32_t t, int32_t dual, uint8_t* out) {
    cfg_t c = {enabled, t, dual};
    for (int64_t i = 0; i < n; ++i) out[i] = (uint8_t)(kind1(a[i], b[i], &c) == KIND_EXACT);
}

/* ---- classes of 16 elements at once (SIMD) -------------------------------------------- */

#if ACC_SIMD
typedef struct { __mmask16 nz, s, n, q; __m512i e, p; } cls16_t;

/* With y = x << 1 (the sign dropped): zero is y == 0, zero/inf/NaN exponents y >= 0xFF000000,
 * subnormals 0 < y < 2^24; each class is one unsigned compare. */
INLINE cls16_t classify16(__m512i x, int t, int want_n, int want_q) {
    cls16_t r;
    const __m512i y = _mm512_slli_epi32(x, 1);
    r.nz = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(y, _mm512_set1_epi32(1)),
                                   _mm512_set1_epi32((int)0xFEFFFFFFu));
    r.s = r.n = r.q = 0;
    r.e = r.p = _mm512_srli_epi32(y, 24);
    if (want_n) {
        r.s = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(y, _mm512_set1_epi32(1)),
                                      _mm512_set1_epi32(0x00FFFFFF));
        r.n = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(y, _mm512_set1_epi32(0x01000000)),
                                      _mm512_set1_epi32((int)0xFE000000u));
    }
    if (want_q) {   /* the top t+1 fraction bits all 0 or all 1: (top + 1) & ones < 2 */
        const __m512i ones = _mm512_set1_epi32((1 << (t + 1)) - 1);
        const __m512i top = _mm512_and_si512(_mm512_srlv_epi32(x, _mm512_set1_epi32(22 - t)), ones);
        r.q = _mm512_mask_cmplt_epu32_mask(r.n, _mm512_and_si512(_mm512_add_epi32(top, _mm512_set1_epi32(1)), ones),
                                           _mm512_set1_epi32(2));
        r.p = _mm512_add_epi32(r.e, _mm512_and_si512(_mm512_srli_epi32(x, 22), _mm512_set1_epi32(1)));
    }
    return r;
}

INLINE __mmask16 tail16(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}
#endif

/* ---- B: pack the checked operand (once per weights and configuration) ------------------ */

#if ACC_SIMD
/* B's classes of 16 elements (exact: [nz]; b: [nz, nz & ~q]; dual: [nz, s, n & ~q]) and the
 * exponent ranges of canna_acc_pack_b's info[0..3] (g: qmin, qmax, nmin, nmax) updated with them.
 * enabled and dual are constants where it is inlined. */
INLINE void classes16_b(const cls16_t* r, const int enabled, const int dual, __mmask16* m,
                        __m512i* g) {
    m[0] = r->nz;
    m[1] = dual ? r->s : (__mmask16)(r->nz & ~r->q);
    m[2] = (__mmask16)(r->n & ~r->q);
    if (enabled) {
        g[0] = _mm512_mask_min_epi32(g[0], r->q, g[0], r->p);
        g[1] = _mm512_mask_max_epi32(g[1], r->q, g[1], r->p);
        if (dual) {
            g[2] = _mm512_mask_min_epi32(g[2], m[2], g[2], r->e);
            g[3] = _mm512_mask_max_epi32(g[3], m[2], g[3], r->e);
        }
    }
}

INLINE void ranges_out(const __m512i* g, int32_t* ranges) {
    ranges[0] = _mm512_reduce_min_epi32(g[0]);
    ranges[1] = _mm512_reduce_max_epi32(g[1]);
    ranges[2] = _mm512_reduce_min_epi32(g[2]);
    ranges[3] = _mm512_reduce_max_epi32(g[3]);
}

/* canna_acc_pack_b's classes, row by row (streaming B): bit k ORed into the words of every
 * class, 16 columns at a time, and the exponent ranges (info[0..3] of canna_acc_pack_b). Returns
 * whether some element is subnormal. enabled and dual are constants where it is inlined. */
INLINE int pack_b_rows(int64_t K, int64_t N, const uint32_t* B, const int enabled, int t,
                       const int dual, int64_t npad, uint64_t* bcls, int32_t* ranges) {
    const int64_t W = (K + 63) / 64;
    const int nb = !enabled ? 1 : dual ? 3 : 2;
    __m512i sub_any = _mm512_set1_epi32(-1);
    __m512i g[4] = {_mm512_set1_epi32(EMPTY_LO), _mm512_set1_epi32(EMPTY_HI),
                    _mm512_set1_epi32(EMPTY_LO), _mm512_set1_epi32(EMPTY_HI)};
    for (int64_t k = 0; k < K; ++k) {
        const int64_t w = k >> 6;
        const __m512i bit = _mm512_set1_epi64((long long)(1ull << (k & 63)));
        const uint32_t* row = B + k * N;
        for (int64_t j0 = 0; j0 < N; j0 += 16) {
            const __mmask16 jm = tail16(N - j0);
            const __m512i x = _mm512_maskz_loadu_epi32(jm, row + j0);
            /* subnormal present: some y - 1 < 2^24 - 1 among the loaded lanes */
            const __m512i y1 = _mm512_sub_epi32(_mm512_slli_epi32(x, 1), _mm512_set1_epi32(1));
            sub_any = _mm512_mask_min_epu32(sub_any, jm, sub_any, y1);
            const cls16_t r = classify16(x, t, enabled, enabled);
            __mmask16 m[3];
            classes16_b(&r, enabled, dual, m, g);
            for (int c = 0; c < nb; ++c) {
                uint64_t* dst = bcls + (int64_t)c * BSTRIDE(W, npad) + w * npad + j0;
                const __m512i lo = _mm512_loadu_si512(dst), hi = _mm512_loadu_si512(dst + 8);
                _mm512_storeu_si512(dst, _mm512_mask_or_epi64(lo, (__mmask8)m[c], lo, bit));
                _mm512_storeu_si512(dst + 8, _mm512_mask_or_epi64(hi, (__mmask8)(m[c] >> 8), hi, bit));
            }
        }
    }
    ranges_out(g, ranges);
    return (uint32_t)_mm512_reduce_min_epu32(sub_any) < 0x00FFFFFFu;
}

/* pack_b_rows for B given as its transpose T (N x K, row-major: a transposed view of a
 * row-major matrix, the backward phase's W.T): row j of T is column j of B, so each 16 k of it
 * classify into 16-bit masks stored straight into the class words (no bit scatter, no copy of
 * B). bcls must be zeroed. Same results as pack_b_rows on B. */
INLINE int pack_bt_rows(int64_t K, int64_t N, const uint32_t* T, const int enabled, int t,
                        const int dual, int64_t npad, uint64_t* bcls, int32_t* ranges) {
    const int64_t W = (K + 63) / 64, used = (K + 15) / 16, WN4 = 4 * BSTRIDE(W, npad);
    const int nb = !enabled ? 1 : dual ? 3 : 2;
    __mmask16 sub_or = 0;
    __m512i g[4] = {_mm512_set1_epi32(EMPTY_LO), _mm512_set1_epi32(EMPTY_HI),
                    _mm512_set1_epi32(EMPTY_LO), _mm512_set1_epi32(EMPTY_HI)};
    for (int64_t j = 0; j < N; ++j) {
        const uint32_t* row = T + j * K;
        for (int64_t h = 0; h < used; ++h) {
            const __m512i x = _mm512_maskz_loadu_epi32(tail16(K - 16 * h), row + 16 * h);
            const cls16_t r = classify16(x, t, 1, enabled);
            __mmask16 m[3];
            classes16_b(&r, enabled, dual, m, g);
            sub_or |= r.s;
            u16_alias* dst = (u16_alias*)(bcls + (h >> 2) * npad + j) + (h & 3);
            for (int c = 0; c < nb; ++c) dst[c * WN4] = m[c];
        }
    }
    ranges_out(g, ranges);
    return sub_or != 0;
}

/* pack_b_rows for exact mode and policy b when B has no subnormal (the common case; returns 0
 * when it has one, then nothing it wrote counts), with a cheaper classification that holds
 * without subnormals: q = nz and the top t+1 fraction bits all equal, i.e. no bit of
 * x ^ (x << 1) set in 23-t .. 22; the ranges of p = e + m1 from those of v = 2e + m1 = y >> 23
 * (p is non-decreasing in v). Rows are streamed as pack_b_rows does (B comes cold from the
 * update: read down its columns it cost more than the classification saves). bcls zeroed. */
INLINE int pack_b_words(int64_t K, int64_t N, const uint32_t* B, const int enabled, int t,
                        int64_t npad, uint64_t* bcls, int32_t* ranges) {
    const int64_t WN = BSTRIDE((K + 63) / 64, npad);
    const __m512i one = _mm512_set1_epi32(1), lim = _mm512_set1_epi32((int)0xFEFFFFFFu);
    const __m512i qbits = _mm512_set1_epi32((int)(((1u << t) - 1u) << (23 - t)));
    __m512i y1min = _mm512_set1_epi32(-1);
    __m512i vmin = _mm512_set1_epi32(0x7FFFFFFF), vmax = _mm512_set1_epi32(-1);
    for (int64_t k = 0; k < K; ++k) {
        const __m512i bit = _mm512_set1_epi64((long long)(1ull << (k & 63)));
        const uint32_t* row = B + k * N;
        uint64_t* dst0 = bcls + (k >> 6) * npad;
        for (int64_t j0 = 0; j0 < N; j0 += 16) {
            const __m512i x = _mm512_maskz_loadu_epi32(tail16(N - j0), row + j0);
            const __m512i y = _mm512_slli_epi32(x, 1), y1 = _mm512_sub_epi32(y, one);
            const __mmask16 nz = _mm512_cmplt_epu32_mask(y1, lim);
            y1min = _mm512_min_epu32(y1min, y1);   /* zero lanes give 2^32 - 1 */
            __mmask16 m[2] = {nz, 0};
            if (enabled) {
                const __mmask16 q = _mm512_mask_testn_epi32_mask(nz, _mm512_xor_si512(x, y), qbits);
                const __m512i v = _mm512_srli_epi32(y, 23);
                vmin = _mm512_mask_min_epi32(vmin, q, vmin, v);
                vmax = _mm512_mask_max_epi32(vmax, q, vmax, v);
                m[1] = (__mmask16)(nz & ~q);
            }
            for (int c = 0; c < 1 + enabled; ++c) {
                uint64_t* dst = dst0 + c * WN + j0;
                const __m512i lo = _mm512_loadu_si512(dst), hi = _mm512_loadu_si512(dst + 8);
                _mm512_storeu_si512(dst, _mm512_mask_or_epi64(lo, (__mmask8)m[c], lo, bit));
                _mm512_storeu_si512(dst + 8, _mm512_mask_or_epi64(hi, (__mmask8)(m[c] >> 8), hi, bit));
            }
        }
    }
    if ((uint32_t)_mm512_reduce_min_epu32(y1min) < 0x00FFFFFFu) return 0;   /* a subnormal */
    ranges[0] = ranges[2] = EMPTY_LO;
    ranges[1] = ranges[3] = EMPTY_HI;
    const int32_t lo = _mm512_reduce_min_epi32(vmin), hi = _mm512_reduce_max_epi32(vmax);
    if (enabled && hi >= 0) {
        ranges[0] = (lo >> 1) + (lo & 1);
        ranges[1] = (hi >> 1) + (hi & 1);
    }
    return 1;
}
#endif

/* Classes of B (K x N bit patterns, B[k][j] at B[k * sk + j * sj]: sj = 1 or sk = 1) per
 * configuration:
 *   exact: [nz]          b: [nz, nz & ~q]          dual: [nz, s, n & ~q]
 * bcls: nb classes BSTRIDE(W, npad) words apart, W x npad each (zeroed here); enabled, it has
 * room for one more, z = ~nz over the valid k (bits k >= K and columns >= N are 0), written when
 * some element is zero/inf/NaN (info[4]: the no-skip count's bypass bits). pc_nz[j]: nonzero
 * finite elements of column j. info[0..1]: min/max of p = e + m1 over qualifying elements,
 * info[2..3]: min/max of e over normal non-qualifying ones (dual), EMPTY_LO/EMPTY_HI when none
 * (exact mode: none); info[4]: some element is zero/inf/NaN; info[5]: some is subnormal. */
static void finish_b(int64_t K, int64_t N, int32_t enabled, int nb, int64_t npad, uint64_t* bcls,
                     int32_t* pc_nz, int32_t* info);

static void pack_b(int64_t K, int64_t N, const uint32_t* B, int64_t sk, int64_t sj,
                   int32_t enabled, int32_t t, int32_t dual, int64_t npad, uint64_t* bcls,
                   int32_t* pc_nz, int32_t* info) {
    const int64_t W = (K + 63) / 64;
    const int nb = !enabled ? 1 : dual ? 3 : 2;
    int32_t rg[4] = {EMPTY_LO, EMPTY_HI, EMPTY_LO, EMPTY_HI};
    int any_sub = 0;
#if ACC_SIMD
    const size_t bytes = sizeof(uint64_t) * (size_t)(nb * BSTRIDE(W, npad));
    memset(bcls, 0, bytes);
    /* exact mode and policy b, row-major: the cheaper packer first; it gives up on a subnormal,
     * and then what it wrote is cleared for the full packer (no subnormal: any_sub stays 0) */
    const int words = sj == 1 && !dual;
    const int packed = words && (enabled ? pack_b_words(K, N, B, 1, t, npad, bcls, rg)
                                         : pack_b_words(K, N, B, 0, t, npad, bcls, rg));
    if (words && !packed) memset(bcls, 0, bytes);
    if (!packed && sj == 1) {
        if (!enabled) any_sub = pack_b_rows(K, N, B, 0, t, 0, npad, bcls, rg);
        else if (!dual) any_sub = pack_b_rows(K, N, B, 1, t, 0, npad, bcls, rg);
        else any_sub = pack_b_rows(K, N, B, 1, t, 1, npad, bcls, rg);
    } else if (!packed) {   /* sk == 1: B is the transpose of a row-major N x K matrix */
        if (!enabled) any_sub = pack_bt_rows(K, N, B, 0, t, 0, npad, bcls, rg);
        else if (!dual) any_sub = pack_bt_rows(K, N, B, 1, t, 0, npad, bcls, rg);
        else any_sub = pack_bt_rows(K, N, B, 1, t, 1, npad, bcls, rg);
    }
#else
    memset(bcls, 0, sizeof(uint64_t) * (size_t)(nb * BSTRIDE(W, npad)));   /* the packer ORs bits in */
    for (int64_t k = 0; k < K; ++k) {
        const int64_t w = k >> 6;
        const uint64_t bit = 1ull << (k & 63);
        for (int64_t j = 0; j < N; ++j) {
            const uint32_t x = B[k * sk + j * sj];
            const int32_t e = (x >> 23) & 0xFF;
            const int nz = !special1(x), s = nz && e == 0, n = nz && e != 0;
            const int q = enabled && n && qual1(x & 0x7FFFFF, t);
            const int32_t p = e + (int32_t)((x & 0x7FFFFF) >> 22);
            any_sub |= s;
            uint64_t* col = bcls + w * npad + j;
            if (nz) col[0] |= bit;
            if (enabled && !dual && nz && !q) col[BSTRIDE(W, npad)] |= bit;
            if (enabled && dual && s) col[BSTRIDE(W, npad)] |= bit;
            if (enabled && dual && n && !q) col[2 * BSTRIDE(W, npad)] |= bit;
            if (q) {
                if (p < rg[0]) rg[0] = p;
                if (p > rg[1]) rg[1] = p;
            }
            if (enabled && dual && n && !q) {
                if (e < rg[2]) rg[2] = e;
                if (e > rg[3]) rg[3] = e;
            }
        }
    }
#endif
    for (int i = 0; i < 4; ++i) info[i] = rg[i];
    info[5] = any_sub;
    finish_b(K, N, enabled, nb, npad, bcls, pc_nz, info);
}

/* The end of pack_b, once the nb classes are packed and info[0..3], info[5] set: pc_nz,
 * info[4] and the z class. */
static void finish_b(int64_t K, int64_t N, int32_t enabled, int nb, int64_t npad, uint64_t* bcls,
                     int32_t* pc_nz, int32_t* info) {
    const int64_t W = (K + 63) / 64;
    int64_t nz_total = 0;
    for (int64_t j = 0; j < N; ++j) pc_nz[j] = 0;
    for (int64_t w = 0; w < W; ++w)
        for (int64_t j = 0; j < N; ++j) pc_nz[j] += __builtin_popcountll(bcls[w * npad + j]);
    for (int64_t j = 0; j < N; ++j) nz_total += pc_nz[j];
    info[4] = nz_total != K * N;
    if (enabled && info[4]) {   /* class nb: z = ~nz over the valid k */
        uint64_t* z = bcls + (int64_t)nb * BSTRIDE(W, npad);
        for (int64_t w = 0; w < W; ++w) {
            const uint64_t vm = valid_word(K, w);
            for (int64_t j = 0; j < N; ++j) z[w * npad + j] = ~bcls[w * npad + j] & vm;
            for (int64_t j = N; j < npad; ++j) z[w * npad + j] = 0;
        }
    }
}

void canna_acc_pack_b(int64_t K, int64_t N, const uint32_t* B, int32_t enabled, int32_t t,
                      int32_t dual, int64_t npad, uint64_t* bcls, int32_t* pc_nz, int32_t* info) {
    pack_b(K, N, B, N, 1, enabled, t, dual, npad, bcls, pc_nz, info);
}

/* canna_acc_pack_b of B = T.T, T (N x K) row-major: the same classes, read row by row. */
void canna_acc_pack_bt(int64_t K, int64_t N, const uint32_t* T, int32_t enabled, int32_t t,
                       int32_t dual, int64_t npad, uint64_t* bcls, int32_t* pc_nz, int32_t* info) {
    pack_b(K, N, T, 1, K, enabled, t, dual, npad, bcls, pc_nz, info);
}

/* Range-OR tables of every B class for tiles of `lanes` outputs: tabs is nb x 2 x N x W; with
 * the columns cut into blocks of `lanes` (from column 0), BS[j] = OR of the class's columns from
 * j to the end of j's block, BP[j] = OR from the start of j's block to j. A tile's segment of a
 * row has at most `lanes` columns, so it meets at most two blocks (see seg_xy). */
void canna_acc_tables(int64_t N, int64_t W, int64_t npad, int32_t nb, const uint64_t* bcls,
                      int32_t lanes, uint64_t* tabs) {
    const int64_t T = N * W;
    for (int c = 0; c < nb; ++c) {
        const uint64_t* b = bcls + (int64_t)c * BSTRIDE(W, npad);
        uint64_t* BS = tabs + (int64_t)c * 2 * T;
        uint64_t* BP = BS + T;
        /* the class column by column into BP, then BS from it, then BP in place */
        for (int64_t w = 0; w < W; ++w)
            for (int64_t j = 0; j < N; ++j) BP[j * W + w] = b[w * npad + j];
        for (int64_t j0 = 0; j0 < N; j0 += lanes) {
            const int64_t j1 = (j0 + lanes < N) ? j0 + lanes : N;
            for (int64_t w = 0; w < W; ++w) BS[(j1 - 1) * W + w] = BP[(j1 - 1) * W + w];
            for (int64_t j = j1 - 2; j >= j0; --j)
                for (int64_t w = 0; w < W; ++w) BS[j * W + w] = BS[(j + 1) * W + w] | BP[j * W + w];
            for (int64_t j = j0 + 1; j < j1; ++j)
                for (int64_t w = 0; w < W; ++w) BP[j * W + w] |= BP[(j - 1) * W + w];
        }
    }
}

/* ---- A: classes of the first operand -------------------------------------------------- */

/* Classes of A (M x K): [nz] exact; [nz, s, n] policy b; [nz, s, n, n & ~q] dual.
 * acls: na x M x W words; pc_nz[i]; ranges[0..3]: min/max e over normal elements, min/max p
 * over qualifying ones (dual); flags[0]: some element zero/inf/NaN, flags[1]: some subnormal. */
static __attribute__((noinline)) void pack_a(int64_t M, int64_t K, const uint32_t* A,
                                             const cfg_t* c, int na, uint64_t* acls,
                                             int32_t* pc_nz, int32_t* ranges, int* flags) {
    const int64_t W = (K + 63) / 64, MW = M * W;
    const int want_q = c->enabled && c->dual;
    int64_t nz_total = 0;
    uint64_t sub_or = 0;
#if ACC_SIMD
    __m512i emin = _mm512_set1_epi32(EMPTY_LO), emax = _mm512_set1_epi32(EMPTY_HI);
    __m512i pmin = emin, pmax = emax;
    /* a word is four 16-bit masks (little endian): write them as uint16, zero the unused ones */
    const int64_t H = 4 * W, used = (K + 15) / 16;
    u16_alias* h_nz = (u16_alias*)acls;
    u16_alias* h_s = (u16_alias*)(acls + MW);
    u16_alias* h_n = (u16_alias*)(acls + 2 * MW);
    u16_alias* h_q = (u16_alias*)(acls + 3 * MW);
    for (int64_t i = 0; i < M; ++i) {
        const uint32_t* row = A + i * K;
        int32_t pc = 0;
        for (int64_t h = 0; h < used; ++h) {
            __m512i x = _mm512_maskz_loadu_epi32(tail16(K - 16 * h), row + 16 * h);
            cls16_t r = classify16(x, c->t, na > 1, want_q);
            h_nz[i * H + h] = r.nz;
            if (na > 1) {
                h_s[i * H + h] = r.s;
                h_n[i * H + h] = r.n;
                emin = _mm512_mask_min_epi32(emin, r.n, emin, r.e);
                emax = _mm512_mask_max_epi32(emax, r.n, emax, r.e);
            }
            if (na > 3) {
                h_q[i * H + h] = r.n & (__mmask16)~r.q;
                pmin = _mm512_mask_min_epi32(pmin, r.q, pmin, r.p);
                pmax = _mm512_mask_max_epi32(pmax, r.q, pmax, r.p);
            }
        }
        for (int64_t h = used; h < H; ++h) {
            h_nz[i * H + h] = 0;
            if (na > 1) h_s[i * H + h] = h_n[i * H + h] = 0;
            if (na > 3) h_q[i * H + h] = 0;
        }
        for (int64_t w = 0; w < W; ++w) pc += __builtin_popcountll(acls[i * W + w]);
        if (na > 1)
            for (int64_t w = 0; w < W; ++w) sub_or |= acls[MW + i * W + w];
        pc_nz[i] = pc;
        nz_total += pc;
    }
    ranges[0] = _mm512_reduce_min_epi32(emin);
    ranges[1] = _mm512_reduce_max_epi32(emax);
    ranges[2] = _mm512_reduce_min_epi32(pmin);
    ranges[3] = _mm512_reduce_max_epi32(pmax);
#else
    ranges[0] = ranges[2] = EMPTY_LO;
    ranges[1] = ranges[3] = EMPTY_HI;
    for (int64_t i = 0; i < M; ++i) {
        const uint32_t* row = A + i * K;
        int32_t pc = 0;
        for (int64_t w = 0; w < W; ++w) {
            uint64_t wn = 0, ws = 0, wr = 0, wq = 0;
            const int64_t kn = (K - 64 * w) < 64 ? (K - 64 * w) : 64;
            for (int64_t kk = 0; kk < kn; ++kk) {
                const uint32_t x = row[64 * w + kk];
                const int32_t e = (x >> 23) & 0xFF;
                const int nz = !special1(x), s = nz && e == 0, n = nz && e != 0;
                const int q = want_q && n && qual1(x & 0x7FFFFF, c->t);
                const int32_t p = e + (int32_t)((x & 0x7FFFFF) >> 22);
                const uint64_t bit = 1ull << kk;
                if (nz) wn |= bit;
                if (s) ws |= bit;
                if (n) {
                    wr |= bit;
                    if (e < ranges[0]) ranges[0] = e;
                    if (e > ranges[1]) ranges[1] = e;
                }
                if (n && !q) wq |= bit;
                if (q) {
                    if (p < ranges[2]) ranges[2] = p;
                    if (p > ranges[3]) ranges[3] = p;
                }
            }
            acls[i * W + w] = wn;
            if (na > 1) { acls[MW + i * W + w] = ws; acls[2 * MW + i * W + w] = wr; }
            if (na > 3) acls[3 * MW + i * W + w] = wq;
            sub_or |= ws;
            pc += __builtin_popcountll(wn);
        }
        pc_nz[i] = pc;
        nz_total += pc;
    }
#endif
    flags[0] = nz_total != M * K;
    flags[1] = sub_or != 0;
}

#if ACC_SIMD
/* The common case of pack_a: no subnormal in A. Writes only nz (class 0) and, for dual, n & ~q
 * (class 3): without subnormals n = nz and s is empty. Returns 0 when A has a subnormal (then
 * nothing it wrote counts: run pack_a), else 1 with pc_nz, ranges and flags as pack_a's. */
INLINE int pack_a_plain_mode(int64_t M, int64_t K, const uint32_t* A, int t, const int mode,
                             uint64_t* acls, int32_t* pc_nz, int32_t* ranges, int* flags) {
    const int64_t W = (K + 63) / 64, MW = M * W, H = 4 * W, used = (K + 15) / 16;
    u16_alias* h_nz = (u16_alias*)acls;
    u16_alias* h_q = (u16_alias*)(acls + 3 * MW);
    /* y = x << 1 over the nonzero finite elements: its extremes give the exponent range, and a
     * minimum below 2^24 reveals a subnormal */
    __m512i ymin = _mm512_set1_epi32(-1), ymax = _mm512_setzero_si512();
    __m512i pmin = _mm512_set1_epi32(EMPTY_LO), pmax = _mm512_set1_epi32(EMPTY_HI);
    const __m512i one = _mm512_set1_epi32(1), lim = _mm512_set1_epi32((int)0xFEFFFFFFu);
    const __m512i ones = _mm512_set1_epi32((1 << (t + 1)) - 1), sh = _mm512_set1_epi32(22 - t);
    int64_t nz_total = 0;
    for (int64_t i = 0; i < M; ++i) {
        const uint32_t* row = A + i * K;
        for (int64_t h = 0; h < used; ++h) {
            const __m512i x = _mm512_maskz_loadu_epi32(tail16(K - 16 * h), row + 16 * h);
            const __m512i y = _mm512_slli_epi32(x, 1);
            const __mmask16 nz = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(y, one), lim);
            h_nz[i * H + h] = nz;
            if (mode >= 1) {
                ymin = _mm512_mask_min_epu32(ymin, nz, ymin, y);
                ymax = _mm512_mask_max_epu32(ymax, nz, ymax, y);
                if (mode == 2) {
                    const __m512i top = _mm512_and_si512(_mm512_srlv_epi32(x, sh), ones);
                    const __mmask16 q = _mm512_mask_cmplt_epu32_mask(
                        nz, _mm512_and_si512(_mm512_add_epi32(top, one), ones), _mm512_set1_epi32(2));
                    h_q[i * H + h] = nz & (__mmask16)~q;
                    const __m512i p = _mm512_add_epi32(_mm512_srli_epi32(y, 24),
                                                       _mm512_and_si512(_mm512_srli_epi32(x, 22), one));
                    pmin = _mm512_mask_min_epi32(pmin, q, pmin, p);
                    pmax = _mm512_mask_max_epi32(pmax, q, pmax, p);
                }
            }
        }
        for (int64_t h = used; h < H; ++h) {
            h_nz[i * H + h] = 0;
            if (mode == 2) h_q[i * H + h] = 0;
        }
        int32_t pc = 0;
        for (int64_t w = 0; w < W; ++w) pc += __builtin_popcountll(acls[i * W + w]);
        pc_nz[i] = pc;
        nz_total += pc;
    }
    ranges[0] = ranges[2] = EMPTY_LO;
    ranges[1] = ranges[3] = EMPTY_HI;
    if (mode >= 1 && nz_total > 0) {
        const uint32_t lo = _mm512_reduce_min_epu32(ymin), hi = _mm512_reduce_max_epu32(ymax);
        if (lo < (1u << 24)) return 0;     /* a subnormal: pack_a does it all */
        ranges[0] = (int32_t)(lo >> 24);
        ranges[1] = (int32_t)(hi >> 24);
        ranges[2] = _mm512_reduce_min_epi32(pmin);
        ranges[3] = _mm512_reduce_max_epi32(pmax);
    }
    flags[0] = nz_total != M * K;
    flags[1] = 0;    /* none (policy b, dual), or none that matters (exact mode) */
    return 1;
}

static __attribute__((noinline)) int pack_a_plain(int64_t M, int64_t K, const uint32_t* A,
                                                  const cfg_t* c, uint64_t* acls, int32_t* pc_nz,
                                                  int32_t* ranges, int* flags) {
    if (!c->enabled) return pack_a_plain_mode(M, K, A, c->t, 0, acls, pc_nz, ranges, flags);
    if (!c->dual) return pack_a_plain_mode(M, K, A, c->t, 1, acls, pc_nz, ranges, flags);
    return pack_a_plain_mode(M, K, A, c->t, 2, acls, pc_nz, ranges, flags);
}
#endif

/* A hit's exponent e1 + e2 - 127 may leave 1..254 for some pair with e1 in [lo1, hi1] and e2 in
 * [lo2, hi2] (both ranges non-empty). */
INLINE int out_of_range(int lo1, int hi1, int lo2, int hi2) {
    if (lo1 > hi1 || lo2 > hi2) return 0;
    return lo1 + lo2 - 127 < 1 || hi1 + hi2 - 127 > 254;
}

/* Words of k in which some product's hit exponent may leave the range: hard[w] = 1. Returns
 * how many. Global ranges first (the usual answer: none), then per k from both operands. */
static int64_t hard_words(int64_t M, int64_t N, int64_t K, const uint32_t* A, const uint32_t* B,
                          int64_t bsk, int64_t bsj, const cfg_t* c, const int32_t* ar, const int32_t* info, uint8_t* hard) {
    const int64_t W = (K + 63) / 64;
    memset(hard, 0, (size_t)W);
    if (!c->enabled) return 0;
    if (!out_of_range(ar[0], ar[1], info[0], info[1]) &&
        !(c->dual && out_of_range(ar[2], ar[3], info[2], info[3])))
        return 0;
    /* per k: A's column k (e over normal, p over qualifying), B's row k (p over qualifying,
     * e over normal non-qualifying) */
    int32_t* col = (int32_t*)malloc(sizeof(int32_t) * 8 * (size_t)K);
    if (!col) { memset(hard, 1, (size_t)W); return W; }   /* all product by product: still exact */
    int32_t* row = col + 4 * K;
    for (int64_t k = 0; k < K; ++k)
        for (int q = 0; q < 8; q += 2) { col[q * K + k] = EMPTY_LO; col[(q + 1) * K + k] = EMPTY_HI; }
#define LOWER(v, x) do { if ((x) < (v)) (v) = (x); } while (0)
#define RAISE(v, x) do { if ((x) > (v)) (v) = (x); } while (0)
    for (int64_t i = 0; i < M; ++i)
        for (int64_t k = 0; k < K; ++k) {
            const uint32_t x = A[i * K + k];
            const int32_t e = (x >> 23) & 0xFF;
            if (e == 0 || e == 255) continue;
            LOWER(col[k], e);
            RAISE(col[K + k], e);
            if (c->dual && qual1(x & 0x7FFFFF, c->t)) {
                const int32_t p = e + (int32_t)((x & 0x7FFFFF) >> 22);
                LOWER(col[2 * K + k], p);
                RAISE(col[3 * K + k], p);
            }
        }
    for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < N; ++j) {
            const uint32_t x = B[k * bsk + j * bsj];
            const int32_t e = (x >> 23) & 0xFF;
            if (e == 0 || e == 255) continue;
            if (qual1(x & 0x7FFFFF, c->t)) {
                const int32_t p = e + (int32_t)((x & 0x7FFFFF) >> 22);
                LOWER(row[k], p);
                RAISE(row[K + k], p);
            } else {
                LOWER(row[2 * K + k], e);
                RAISE(row[3 * K + k], e);
            }
        }
#undef LOWER
#undef RAISE
    int64_t count = 0;
    for (int64_t k = 0; k < K; ++k) {
        int bad = out_of_range(col[k], col[K + k], row[k], row[K + k]);
        if (c->dual) bad |= out_of_range(col[2 * K + k], col[3 * K + k], row[2 * K + k], row[3 * K + k]);
        if (bad && !hard[k >> 6]) { hard[k >> 6] = 1; ++count; }
    }
    free(col);
    return count;
}

/* ---- the popcount GEMM: cnt[i][j] = sum_w popcount(OR_p (A_pa[p][i][w] & B_pb[p][w][j])) ---- */

typedef struct { const uint64_t* a[3]; const uint64_t* b[3]; int np; } pairs_t;

#if ACC_SIMD
INLINE void gemm_block(const pairs_t* ps, const int np, const int R, int64_t i0, int64_t W,
                       int64_t npad, int64_t N, int64_t j0, int32_t* out, int64_t ostride) {
    __m512i acc[4][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
    for (int64_t w = 0; w < W; ++w) {
        __m512i b0[3], b1[3];
        for (int p = 0; p < np; ++p) {
            const uint64_t* bp = ps->b[p] + w * npad + j0;
            b0[p] = _mm512_loadu_si512(bp);
            b1[p] = _mm512_loadu_si512(bp + 8);
        }
        for (int r = 0; r < R; ++r) {
            __m512i e0 = _mm512_setzero_si512(), e1 = _mm512_setzero_si512();
            for (int p = 0; p < np; ++p) {
                const __m512i a = _mm512_set1_epi64((long long)ps->a[p][(i0 + r) * W + w]);
                e0 = _mm512_or_si512(e0, _mm512_and_si512(a, b0[p]));
                e1 = _mm512_or_si512(e1, _mm512_and_si512(a, b1[p]));
            }
            acc[r][0] = _mm512_add_epi64(acc[r][0], _mm512_popcnt_epi64(e0));
            acc[r][1] = _mm512_add_epi64(acc[r][1], _mm512_popcnt_epi64(e1));
        }
    }
    const __mmask16 jm = tail16(N - j0);
    for (int r = 0; r < R; ++r) {
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(acc[r][0])),
                                       _mm512_cvtepi64_epi32(acc[r][1]), 1);
        _mm512_mask_storeu_epi32(out + r * ostride + j0, jm, v);
    }
}

/* Rows i_lo .. i_hi-1, columns jl .. jh-1 (jh <= N; jl is taken down to a multiple of 16,
 * computing a few more columns of the same rows) into out[(i - o_r0) * N + j]. */
INLINE void gemm_np(const pairs_t* ps, const int np, int64_t i_lo, int64_t i_hi, int64_t jl,
                    int64_t jh, int64_t W, int64_t npad, int64_t N, int32_t* out, int64_t o_r0) {
    jl &= ~(int64_t)15;
    int64_t i = i_lo;
    for (; i + 4 <= i_hi; i += 4)
        for (int64_t j0 = jl; j0 < jh; j0 += 16)
            gemm_block(ps, np, 4, i, W, npad, jh, j0, out + (i - o_r0) * N, N);
    for (; i < i_hi; ++i)
        for (int64_t j0 = jl; j0 < jh; j0 += 16)
            gemm_block(ps, np, 1, i, W, npad, jh, j0, out + (i - o_r0) * N, N);
}

static void gemm(const pairs_t* ps, int64_t i_lo, int64_t i_hi, int64_t jl, int64_t jh,
                 int64_t W, int64_t npad, int64_t N, int32_t* out, int64_t o_r0) {
    switch (ps->np) {
        case 1: gemm_np(ps, 1, i_lo, i_hi, jl, jh, W, npad, N, out, o_r0); break;
        case 2: gemm_np(ps, 2, i_lo, i_hi, jl, jh, W, npad, N, out, o_r0); break;
        default: gemm_np(ps, 3, i_lo, i_hi, jl, jh, W, npad, N, out, o_r0); break;
    }
}
#else
static void gemm(const pairs_t* ps, int64_t i_lo, int64_t i_hi, int64_t jl, int64_t jh,
                 int64_t W, int64_t npad, int64_t N, int32_t* out, int64_t o_r0) {
    for (int64_t i = i_lo; i < i_hi; ++i) {
        int32_t* o = out + (i - o_r0) * N;
        for (int64_t j = jl; j < jh; ++j) o[j] = 0;
        for (int64_t w = 0; w < W; ++w) {
            uint64_t a[3];
            for (int p = 0; p < ps->np; ++p) a[p] = ps->a[p][i * W + w];
            for (int64_t j = jl; j < jh; ++j) {
                uint64_t e = 0;
                for (int p = 0; p < ps->np; ++p) e |= a[p] & ps->b[p][w * npad + j];
                o[j] += __builtin_popcountll(e);
            }
        }
    }
}
#endif

/* The counts of the flat outputs f_lo .. f_hi-1 (rows r0 = f_lo / N ..) into out, indexed by
 * flat - r0 * N: partial first and last rows, whole rows between. */
static void gemm_flat(const pairs_t* ps, int64_t f_lo, int64_t f_hi, int64_t W, int64_t npad,
                      int64_t N, int32_t* out) {
    const int64_t r0 = f_lo / N, rl = (f_hi - 1) / N;
    if (r0 == rl) { gemm(ps, r0, r0 + 1, f_lo - r0 * N, f_hi - r0 * N, W, npad, N, out, r0); return; }
    int64_t first = r0;
    if (f_lo > r0 * N) { gemm(ps, r0, r0 + 1, f_lo - r0 * N, N, W, npad, N, out, r0); ++first; }
    int64_t last = rl + 1;
    if (f_hi < (rl + 1) * N) { gemm(ps, rl, rl + 1, 0, f_hi - rl * N, W, npad, N, out, r0); --last; }
    if (first < last) gemm(ps, first, last, 0, N, W, npad, N, out, r0);
}

/* ---- tiles ------------------------------------------------------------------------------ */

/* The lanes of a tile restricted to one row: row r, columns c0 .. c1-1. */
typedef struct { int64_t r, c0, c1; } seg_t;

/* A term a & (x | y) of the OR over a tile's lanes: a is a row of an A class, x | y the OR of
 * the paired B class over the segment's columns (from the range-OR tables). */
typedef struct { const uint64_t *a, *x, *y; } term_t;

/* A pair set with its B classes' range-OR tables: BS, BP per pair. */
typedef struct { const pairs_t* ps; const uint64_t* tab[3][2]; } set_tabs_t;

static void set_tabs(set_tabs_t* st, const pairs_t* ps, const int* pb_index, const uint64_t* tabs,
                     int64_t N, int64_t W) {
    const int64_t T = N * W;
    st->ps = ps;
    for (int p = 0; p < ps->np; ++p)
        for (int q = 0; q < 2; ++q) st->tab[p][q] = tabs + ((int64_t)pb_index[p] * 2 + q) * T;
}

/* The OR of a class's columns c0 .. c1-1 as x | y from its tables (BS = tab[0], BP = tab[1]),
 * for the segments the tile plan makes (at most `lanes` columns: a window of exactly `lanes`,
 * a row's prefix or suffix, or a whole row shorter than `lanes`), each within two blocks.
 * Returns 0 for any other range (none is made; the caller then ORs the columns itself). */
INLINE int seg_xy(const uint64_t* const* tab, int64_t c0, int64_t c1, int64_t N, int64_t W,
                  int64_t lanes, const uint64_t** x, const uint64_t** y) {
    const uint64_t *BS = tab[0], *BP = tab[1];
    const int64_t len = c1 - c0;
    if (len <= 0 || len > lanes) return 0;
    const int64_t b0 = c0 / lanes, b1 = (c1 - 1) / lanes;
    if (b0 == b1) {     /* within one block: a prefix or suffix of it */
        if (c1 == N || c1 == (b0 + 1) * lanes) { *x = *y = BS + c0 * W; return 1; }
        if (c0 == b0 * lanes) { *x = *y = BP + (c1 - 1) * W; return 1; }
        return 0;
    }
    /* two adjacent blocks: the end of c0's and the start of c1-1's */
    *x = BS + c0 * W;
    *y = BP + (c1 - 1) * W;
    return 1;
}

/* The terms of OR_l OR_p (A_pa[r_l] & B_pb[j_l]) over a tile's segments. tmp: scratch for a
 * segment the tables do not answer directly (the tile plan makes none; kept exact anyway). */
INLINE int tile_terms(const seg_t* segs, int nseg, const set_tabs_t* st, int64_t N, int64_t W,
                      int64_t npad, int64_t lanes, term_t* terms, uint64_t* tmp) {
    const pairs_t* ps = st->ps;
    int n = 0;
    for (int s = 0; s < nseg; ++s) {
        const int64_t r = segs[s].r, c0 = segs[s].c0, c1 = segs[s].c1;
        for (int p = 0; p < ps->np; ++p) {
            term_t* tm = terms + n++;
            tm->a = ps->a[p] + r * W;
            if (!seg_xy(st->tab[p], c0, c1, N, W, lanes, &tm->x, &tm->y)) {
                uint64_t* o = tmp + (int64_t)(n - 1) * W;
                for (int64_t w = 0; w < W; ++w) o[w] = 0;
                for (int64_t j = c0; j < c1; ++j)
                    for (int64_t w = 0; w < W; ++w) o[w] |= ps->b[p][w * npad + j];
                tm->x = tm->y = o;
            }
        }
    }
    return n;
}

#if ACC_SIMD
typedef __m512i popacc_t;
INLINE popacc_t popacc_zero(void) { return _mm512_setzero_si512(); }
INLINE int64_t popacc_sum(popacc_t a) { return _mm512_reduce_add_epi64(a); }
#else
typedef int64_t popacc_t;
INLINE popacc_t popacc_zero(void) { return 0; }
INLINE int64_t popacc_sum(popacc_t a) { return a; }
#endif

/* cnt += popcount(OR_terms a & (x | y)) over W words. */
INLINE void terms_pop(const term_t* tm, int n, int64_t W, popacc_t* cnt) {
#if ACC_SIMD
    for (int64_t w0 = 0; w0 < W; w0 += 8) {
        const __mmask8 m = (W - w0) >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (W - w0)) - 1u);
        __m512i acc = _mm512_setzero_si512();
        for (int q = 0; q < n; ++q) {
            const __m512i xy = _mm512_or_si512(_mm512_maskz_loadu_epi64(m, tm[q].x + w0),
                                               _mm512_maskz_loadu_epi64(m, tm[q].y + w0));
            acc = _mm512_or_si512(acc, _mm512_and_si512(_mm512_maskz_loadu_epi64(m, tm[q].a + w0), xy));
        }
        *cnt = _mm512_add_epi64(*cnt, _mm512_popcnt_epi64(acc));
    }
#else
    for (int64_t w = 0; w < W; ++w) {
        uint64_t acc = 0;
        for (int q = 0; q < n; ++q) acc |= tm[q].a[w] & (tm[q].x[w] | tm[q].y[w]);
        *cnt += __builtin_popcountll(acc);
    }
#endif
}

/* ---- no zero skipping --------------------------------------------------------------------- */

/* The no-skip count's state. A tile's slow steps without zero skipping are
 * OR_l (exact_l | bypass_l); its bypass bits are OR_seg vmask & (~nzA[r] | OR_{j in seg} zB[j])
 * (vmask: the valid k, 0 in the hard words, which are counted product by product; zB = ~nzB
 * over the valid k, one more B class with range-OR tables). */
typedef struct {
    const uint64_t* nza;       /* A's nz rows (M x W), or NULL when A has no zero/inf/NaN */
    const uint64_t* zb[2];     /* BS, BP range-OR tables of B's z class, or NULL when B has none */
    const uint64_t* zb_cls;    /* that class (W x npad, word-major) */
    const uint64_t* vmask;     /* W words: the valid k bits, 0 in the hard words */
    popacc_t pop;              /* sum over tiles of the class words' slow steps */
    int64_t pop_hard;          /* the same over the hard words */
    int64_t min_hits;          /* sum over tiles of min over the valid lanes of hits */
} ns_t;

/* A segment's bypass bits: vmask & (~a | x | y), a = nzA's row or NULL, x | y = the OR of zB
 * over its columns or NULL. */
typedef struct { const uint64_t *a, *x, *y; } zterm_t;

/* The bypass terms of a tile's segments into zt (one per segment); tmp: W words per segment
 * for a range the tables do not answer (as tile_terms). */
INLINE int ns_terms(const seg_t* segs, int nseg, const ns_t* ns, int64_t N, int64_t W,
                    int64_t npad, int64_t lanes, zterm_t* zt, uint64_t* tmp) {
    for (int s = 0; s < nseg; ++s) {
        zterm_t* z = zt + s;
        z->a = ns->nza ? ns->nza + segs[s].r * W : NULL;
        z->x = z->y = NULL;
        if (ns->zb[0] && !seg_xy(ns->zb, segs[s].c0, segs[s].c1, N, W, lanes, &z->x, &z->y)) {
            uint64_t* o = tmp + (int64_t)s * W;
            for (int64_t w = 0; w < W; ++w) o[w] = 0;
            for (int64_t j = segs[s].c0; j < segs[s].c1; ++j)
                for (int64_t w = 0; w < W; ++w) o[w] |= ns->zb_cls[w * npad + j];
            z->x = z->y = o;
        }
    }
    return nseg;
}

/* cnt += popcount(OR_terms a & (x | y)) and ns->pop += popcount of that OR ORed with the
 * bypass terms, over W words, in one pass. */
INLINE void terms_pop_ns(const term_t* tm, int n, const zterm_t* zt, int nz, int64_t W,
                         popacc_t* cnt, ns_t* ns) {
#if ACC_SIMD
    for (int64_t w0 = 0; w0 < W; w0 += 8) {
        const __mmask8 m = (W - w0) >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (W - w0)) - 1u);
        __m512i acc = _mm512_setzero_si512(), z = _mm512_setzero_si512();
        for (int q = 0; q < n; ++q) {
            const __m512i xy = _mm512_or_si512(_mm512_maskz_loadu_epi64(m, tm[q].x + w0),
                                               _mm512_maskz_loadu_epi64(m, tm[q].y + w0));
            acc = _mm512_or_si512(acc, _mm512_and_si512(_mm512_maskz_loadu_epi64(m, tm[q].a + w0), xy));
        }
        *cnt = _mm512_add_epi64(*cnt, _mm512_popcnt_epi64(acc));
        for (int q = 0; q < nz; ++q) {
            if (zt[q].a) z = _mm512_or_si512(z, _mm512_xor_si512(_mm512_maskz_loadu_epi64(m, zt[q].a + w0),
                                                                 _mm512_set1_epi64(-1)));
            if (zt[q].x) z = _mm512_or_si512(z, _mm512_or_si512(_mm512_maskz_loadu_epi64(m, zt[q].x + w0),
                                                                _mm512_maskz_loadu_epi64(m, zt[q].y + w0)));
        }
        acc = _mm512_or_si512(acc, _mm512_and_si512(z, _mm512_maskz_loadu_epi64(m, ns->vmask + w0)));
        ns->pop = _mm512_add_epi64(ns->pop, _mm512_popcnt_epi64(acc));
    }
#else
    for (int64_t w = 0; w < W; ++w) {
        uint64_t acc = 0, z = 0;
        for (int q = 0; q < n; ++q) acc |= tm[q].a[w] & (tm[q].x[w] | tm[q].y[w]);
        *cnt += __builtin_popcountll(acc);
        for (int q = 0; q < nz; ++q) {
            if (zt[q].a) z |= ~zt[q].a[w];
            if (zt[q].x) z |= zt[q].x[w] | zt[q].y[w];
        }
        ns->pop += __builtin_popcountll(acc | (z & ns->vmask[w]));
    }
#endif
}

/* min over i < n of b[i] - e[i] (n >= 1). */
INLINE int32_t min_diff(const int32_t* b, const int32_t* e, int64_t n) {
#if ACC_SIMD
    __m512i m = _mm512_set1_epi32(INT32_MAX);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = tail16(n - i);
        m = _mm512_mask_min_epi32(m, k, m, _mm512_sub_epi32(_mm512_maskz_loadu_epi32(k, b + i),
                                                            _mm512_maskz_loadu_epi32(k, e + i)));
    }
    return _mm512_reduce_min_epi32(m);
#else
    int32_t m = INT32_MAX;
    for (int64_t i = 0; i < n; ++i) m = b[i] - e[i] < m ? b[i] - e[i] : m;
    return m;
#endif
}

/* max(x[0 .. nv-1]) of counts (>= 0). */
INLINE int32_t max_counts(const int32_t* x, int64_t nv) {
#if ACC_SIMD
    __m512i m = _mm512_maskz_loadu_epi32(tail16(nv), x);
    for (int64_t l0 = 16; l0 < nv; l0 += 16)
        m = _mm512_max_epi32(m, _mm512_maskz_loadu_epi32(tail16(nv - l0), x + l0));
    return _mm512_reduce_max_epi32(m);
#else
    int32_t m = 0;
    for (int64_t l = 0; l < nv; ++l) m = x[l] > m ? x[l] : m;
    return m;
#endif
}

/* lane[l] += x[l] for l < n; returns max(x[0 .. n-1]) (counts, >= 0). */
INLINE int32_t add_lanes(const int32_t* x, int64_t n, int64_t* lane) {
    int32_t m = 0;
    for (int64_t l = 0; l < n; ++l) {
        lane[l] += x[l];
        m = x[l] > m ? x[l] : m;
    }
    return m;
}

/* A run of n tiles that lie inside row r, the first at column c, each with exactly `lanes`
 * lanes (c + n * lanes <= N; no hard words): adds their decoupled maxima to *max_e, their
 * lockstep popcounts to *pop and their counts to the per-lane sums lane[0 .. L-1]. cnt: the
 * counts of the run's outputs, contiguous. The set's A rows are the same for the whole run.
 * With ns (for the exact set; has_ns a compile-time constant): also the no-skip lockstep
 * popcounts (the exact terms ORed with the bypass bits) into ns->pop and, with bcnt (the base
 * counts, laid out as cnt), sum over tiles of min_l (bcnt - cnt), the fewest hits, into
 * ns->min_hits. */
INLINE void run_row_np(const set_tabs_t* st, const int np, const int has_ns, ns_t* ns,
                       const int32_t* bcnt, int64_t r, int64_t c, int64_t n, int64_t L, int64_t W,
                       const int32_t* cnt, int64_t* max_e, popacc_t* pop, int64_t* lane) {
    const pairs_t* ps = st->ps;
    const int with_min = has_ns && bcnt;
#if ACC_SIMD
    if (L <= 16) {
        const __mmask16 lm = tail16(L);
        int64_t mx = 0, mh = 0;
        __m512i acc = _mm512_setzero_si512();
        for (int64_t q = 0; q < n; ++q) {
            const __m512i v = _mm512_maskz_loadu_epi32(lm, cnt + q * L);
            acc = _mm512_add_epi32(acc, v);
            mx += _mm512_reduce_max_epi32(v);
            if (with_min)
                mh += _mm512_mask_reduce_min_epi32(lm, _mm512_sub_epi32(
                          _mm512_maskz_loadu_epi32(lm, bcnt + q * L), v));
        }
        int32_t sums[16];
        _mm512_storeu_si512(sums, acc);
        for (int64_t l = 0; l < L; ++l) lane[l] += sums[l];
        *max_e += mx;
        if (with_min) ns->min_hits += mh;
    } else
#endif
    {
        for (int64_t q = 0; q < n; ++q) {
            *max_e += max_counts(cnt + q * L, L);
            for (int64_t l = 0; l < L; ++l) lane[l] += cnt[q * L + l];
            if (with_min) ns->min_hits += min_diff(bcnt + q * L, cnt + q * L, L);
        }
    }
    const int with_za = has_ns && ns->nza, with_zb = has_ns && ns->zb[0];
#if ACC_SIMD
    /* no hard words in a run: the bypass bits are (~nzA & valid) | zB, zB holding only valid k */
    if (W <= 8) {
        const __mmask8 m = (__mmask8)((1u << W) - 1u);
        __m512i av[3];
        for (int p = 0; p < np; ++p) av[p] = _mm512_maskz_loadu_epi64(m, ps->a[p] + r * W);
        const __m512i za = with_za ? _mm512_andnot_si512(_mm512_maskz_loadu_epi64(m, ns->nza + r * W),
                                                         _mm512_maskz_loadu_epi64(m, ns->vmask))
                                   : _mm512_setzero_si512();
        __m512i cnt_pop = *pop, ns_pop = has_ns ? ns->pop : _mm512_setzero_si512();
        for (int64_t q = 0; q < n; ++q) {
            const int64_t c0 = c + q * L;
            __m512i acc = _mm512_setzero_si512();
            for (int p = 0; p < np; ++p) {
                const __m512i x = _mm512_maskz_loadu_epi64(m, st->tab[p][0] + c0 * W);
                const __m512i y = _mm512_maskz_loadu_epi64(m, st->tab[p][1] + (c0 + L - 1) * W);
                acc = _mm512_or_si512(acc, _mm512_and_si512(av[p], _mm512_or_si512(x, y)));
            }
            cnt_pop = _mm512_add_epi64(cnt_pop, _mm512_popcnt_epi64(acc));
            if (has_ns) {
                __m512i slow = _mm512_or_si512(acc, za);
                if (with_zb)
                    slow = _mm512_or_si512(slow, _mm512_or_si512(
                        _mm512_maskz_loadu_epi64(m, ns->zb[0] + c0 * W),
                        _mm512_maskz_loadu_epi64(m, ns->zb[1] + (c0 + L - 1) * W)));
                ns_pop = _mm512_add_epi64(ns_pop, _mm512_popcnt_epi64(slow));
            }
        }
        *pop = cnt_pop;
        if (has_ns) ns->pop = ns_pop;
        return;
    }
    {   /* W > 8: the same, 8 words at a time */
        __m512i cnt_pop = *pop, ns_pop = has_ns ? ns->pop : _mm512_setzero_si512();
        for (int64_t q = 0; q < n; ++q) {
            const int64_t c0 = c + q * L;
            for (int64_t w0 = 0; w0 < W; w0 += 8) {
                const __mmask8 m = (W - w0) >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (W - w0)) - 1u);
                __m512i acc = _mm512_setzero_si512();
                for (int p = 0; p < np; ++p) {
                    const __m512i x = _mm512_maskz_loadu_epi64(m, st->tab[p][0] + c0 * W + w0);
                    const __m512i y = _mm512_maskz_loadu_epi64(m, st->tab[p][1] + (c0 + L - 1) * W + w0);
                    acc = _mm512_or_si512(acc, _mm512_and_si512(
                        _mm512_maskz_loadu_epi64(m, ps->a[p] + r * W + w0), _mm512_or_si512(x, y)));
                }
                cnt_pop = _mm512_add_epi64(cnt_pop, _mm512_popcnt_epi64(acc));
                if (!has_ns) continue;
                if (with_za)
                    acc = _mm512_or_si512(acc, _mm512_andnot_si512(
                        _mm512_maskz_loadu_epi64(m, ns->nza + r * W + w0),
                        _mm512_maskz_loadu_epi64(m, ns->vmask + w0)));
                if (with_zb)
                    acc = _mm512_or_si512(acc, _mm512_or_si512(
                        _mm512_maskz_loadu_epi64(m, ns->zb[0] + c0 * W + w0),
                        _mm512_maskz_loadu_epi64(m, ns->zb[1] + (c0 + L - 1) * W + w0)));
                ns_pop = _mm512_add_epi64(ns_pop, _mm512_popcnt_epi64(acc));
            }
        }
        *pop = cnt_pop;
        if (has_ns) ns->pop = ns_pop;
        return;
    }
#endif
    for (int64_t q = 0; q < n; ++q) {
        const int64_t c0 = c + q * L;
        term_t tm[3];
        for (int p = 0; p < np; ++p) {
            tm[p].a = ps->a[p] + r * W;
            tm[p].x = st->tab[p][0] + c0 * W;
            tm[p].y = st->tab[p][1] + (c0 + L - 1) * W;
        }
        if (has_ns) {
            const zterm_t zt = {with_za ? ns->nza + r * W : NULL,
                                with_zb ? ns->zb[0] + c0 * W : NULL,
                                with_zb ? ns->zb[1] + (c0 + L - 1) * W : NULL};
            terms_pop_ns(tm, np, &zt, 1, W, pop, ns);
        } else {
            terms_pop(tm, np, W, pop);
        }
    }
}

static void run_row(const set_tabs_t* st, ns_t* ns, const int32_t* bcnt, int64_t r, int64_t c,
                    int64_t n, int64_t L, int64_t W, const int32_t* cnt, int64_t* max_e,
                    popacc_t* pop, int64_t* lane) {
#define RUN_ROW(np, has) run_row_np(st, np, has, ns, bcnt, r, c, n, L, W, cnt, max_e, pop, lane)
    if (ns) {
        switch (st->ps->np) {
            case 1: RUN_ROW(1, 1); break;
            case 2: RUN_ROW(2, 1); break;
            default: RUN_ROW(3, 1); break;
        }
    } else {
        switch (st->ps->np) {
            case 1: RUN_ROW(1, 0); break;
            case 2: RUN_ROW(2, 0); break;
            default: RUN_ROW(3, 0); break;
        }
    }
#undef RUN_ROW
}

/* One word of exact bits of output (i, j), product by product; *slow: its bits that are not
 * a hit (exact or bypass: the slow products without zero skipping). */
static uint64_t direct_word(const uint32_t* A, const uint32_t* B, int64_t bsk, int64_t bsj, int64_t K,
                            int64_t i, int64_t j, int64_t w, const cfg_t* c, uint64_t* slow) {
    uint64_t word = 0, nohit = 0;
    const int64_t k1 = (64 * w + 64 < K) ? 64 * w + 64 : K;
    for (int64_t k = 64 * w; k < k1; ++k) {
        const int kind = kind1(A[i * K + k], B[k * bsk + j * bsj], c);
        if (kind == KIND_EXACT) word |= 1ull << (k & 63);
        if (kind != KIND_HIT) nohit |= 1ull << (k & 63);
    }
    *slow = nohit;
    return word;
}

/* ---- narrow K (a few words: the weight gradient's K = batch): vectors over tiles ---------- */

#if ACC_SIMD
/* Words of k up to which canna_acc_run takes the narrow path (no hard words, at most
 * NARROW_LANES lanes): where a tile's counts are a few popcounts, the wide path's count
 * buffers, range-OR tables and per-tile horizontal maxima cost more than the counts. Here 8
 * tiles of a row go in the 8 slots of a vector and the loop runs over the lanes: a tile's
 * maximum, minimum and OR over its lanes are element-wise, and B's words of one lane over
 * consecutive tiles (stride `lanes` in B) are copied contiguous once per call (narrow_t). */
#define NARROW_W 4
#define NARROW_LANES 64
static int acc_narrow = 1;

/* The narrow path's sums (as canna_acc_run's): decoupled maxima of exact and base counts,
 * lockstep steps of both, no-skip lockstep steps and the sum over tiles of the fewest hits. */
typedef struct { int64_t max_e, max_b, steps_e, steps_b, ns_steps, min_hits; } narrow_out_t;

/* One row's run of n whole tiles (row constant A words), W, np, has_ns and bz compile-time
 * constants. T[p], Tnz: B's ex classes and nz class at the run's offset, [w][l][q] with Q
 * tiles per lane; acc: [0] max_e, [1] max_b, [2] steps_e, [3] steps_b, [4] no-skip steps,
 * [5] fewest hits. bz = 0 (B has no zero/inf/NaN): every lane's base count is pc, A's row's
 * nonzero count, its base bits A's nz row (added by the caller), and Tnz is not read. */
INLINE void narrow_run(const int W, const int np, const int has_ns, const int bz, int64_t L,
                       int64_t Q, int64_t n, int64_t pc, const uint64_t* const* ar,
                       const uint64_t* anz, const uint64_t* vmask, const uint64_t* const* T,
                       const uint64_t* Tnz, __m512i* lacc_e, __m512i* lacc_b, __m512i* acc) {
    __m512i av[3][NARROW_W], nzv[NARROW_W], zav[NARROW_W], vmv[NARROW_W];
    for (int w = 0; w < W; ++w) {
        nzv[w] = _mm512_set1_epi64((long long)anz[w]);
        vmv[w] = _mm512_set1_epi64((long long)vmask[w]);
        zav[w] = _mm512_andnot_si512(nzv[w], vmv[w]);
        for (int p = 0; p < np; ++p) av[p][w] = _mm512_set1_epi64((long long)ar[p][w]);
    }
    for (int64_t q0 = 0; q0 < n; q0 += 8) {
        const __mmask8 qm = n - q0 >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (n - q0)) - 1u);
        __m512i mx_e = _mm512_setzero_si512(), mx_b = mx_e, mn_h = _mm512_set1_epi64(INT64_MAX);
        const __m512i cb = _mm512_set1_epi64(pc);    /* the base count where bz = 0 */
        __m512i or_e[NARROW_W], or_b[NARROW_W], and_b[NARROW_W];
        for (int w = 0; w < W; ++w) {
            or_e[w] = or_b[w] = _mm512_setzero_si512();
            and_b[w] = _mm512_set1_epi64(-1);
        }
        for (int64_t l = 0; l < L; ++l) {
            __m512i ce = _mm512_setzero_si512(), cbl = bz ? ce : cb;
            for (int w = 0; w < W; ++w) {
                const int64_t ix = (w * L + l) * Q + q0;
                if (bz) {
                    const __m512i bn = _mm512_maskz_loadu_epi64(qm, Tnz + ix);
                    const __m512i bb = _mm512_and_si512(nzv[w], bn);
                    cbl = _mm512_add_epi64(cbl, _mm512_popcnt_epi64(bb));
                    or_b[w] = _mm512_or_si512(or_b[w], bb);
                    if (has_ns) and_b[w] = _mm512_and_si512(and_b[w], bn);
                }
                if (np) {
                    __m512i e = _mm512_and_si512(av[0][w], _mm512_maskz_loadu_epi64(qm, T[0] + ix));
                    for (int p = 1; p < np; ++p)
                        e = _mm512_or_si512(e, _mm512_and_si512(av[p][w], _mm512_maskz_loadu_epi64(qm, T[p] + ix)));
                    ce = _mm512_add_epi64(ce, _mm512_popcnt_epi64(e));
                    or_e[w] = _mm512_or_si512(or_e[w], e);
                }
            }
            if (bz) {
                lacc_b[l] = _mm512_add_epi64(lacc_b[l], cbl);
                mx_b = _mm512_max_epi64(mx_b, cbl);
            }
            if (np) {
                lacc_e[l] = _mm512_add_epi64(lacc_e[l], ce);
                mx_e = _mm512_max_epi64(mx_e, ce);
                if (has_ns && bz) mn_h = _mm512_min_epi64(mn_h, _mm512_sub_epi64(cbl, ce));
            }
        }
        /* slots beyond the run hold zero words: they add nothing but to the no-skip sums */
        if (bz) {
            acc[1] = _mm512_add_epi64(acc[1], mx_b);
            for (int w = 0; w < W; ++w) acc[3] = _mm512_add_epi64(acc[3], _mm512_popcnt_epi64(or_b[w]));
        }
        if (has_ns && !bz) mn_h = _mm512_sub_epi64(cb, mx_e);     /* the fewest hits: pc - max */
        if (np) {
            acc[0] = _mm512_add_epi64(acc[0], mx_e);
            for (int w = 0; w < W; ++w) acc[2] = _mm512_add_epi64(acc[2], _mm512_popcnt_epi64(or_e[w]));
        }
        if (has_ns) {
            acc[5] = _mm512_mask_add_epi64(acc[5], qm, acc[5], mn_h);
            for (int w = 0; w < W; ++w) {   /* bypass bits: valid & (~nzA | ~AND_l nzB) */
                const __m512i slow = !bz ? _mm512_or_si512(or_e[w], zav[w])
                                         : _mm512_or_si512(or_e[w], _mm512_or_si512(
                                               zav[w], _mm512_andnot_si512(and_b[w], vmv[w])));
                acc[4] = _mm512_mask_add_epi64(acc[4], qm, acc[4], _mm512_popcnt_epi64(slow));
            }
        }
    }
}

/* One tile that is not in a run (it wraps across rows, is padded, or N < lanes): nv lanes
 * from flat output f0, lane by lane. */
static void narrow_tile(int64_t W, int64_t N, int64_t npad, int64_t f0, int64_t nv, const pairs_t* ex,
                        const uint64_t* anz, const uint64_t* bnz, const uint64_t* vmask,
                        int has_ns, int64_t* lane_e, int64_t* lane_b, narrow_out_t* o) {
    uint64_t or_e[NARROW_W] = {0}, or_b[NARROW_W] = {0}, zb[NARROW_W] = {0};
    int64_t mx_e = 0, mx_b = 0, mn_h = INT64_MAX, r = f0 / N, j = f0 % N;
    for (int64_t l = 0; l < nv; ++l) {
        int64_t ce = 0, cb = 0;
        for (int64_t w = 0; w < W; ++w) {
            const uint64_t a = anz[r * W + w], bn = bnz[w * npad + j], bb = a & bn;
            cb += __builtin_popcountll(bb);
            or_b[w] |= bb;
            zb[w] |= vmask[w] & ~bb;
            uint64_t e = 0;
            for (int p = 0; p < ex->np; ++p) e |= ex->a[p][r * W + w] & ex->b[p][w * npad + j];
            ce += __builtin_popcountll(e);
            or_e[w] |= e;
        }
        lane_b[l] += cb;
        lane_e[l] += ce;
        mx_b = cb > mx_b ? cb : mx_b;
        mx_e = ce > mx_e ? ce : mx_e;
        mn_h = cb - ce < mn_h ? cb - ce : mn_h;
        if (++j == N) { j = 0; ++r; }
    }
    o->max_b += mx_b;
    o->max_e += mx_e;
    for (int64_t w = 0; w < W; ++w) {
        o->steps_b += __builtin_popcountll(or_b[w]);
        o->steps_e += __builtin_popcountll(or_e[w]);
        if (has_ns) o->ns_steps += __builtin_popcountll(or_e[w] | zb[w]);
    }
    if (has_ns) o->min_hits += mn_h;
}

INLINE void narrow_rows(const int W, const int np, const int has_ns, const int bz, int64_t M,
                        int64_t N, int64_t L, const pairs_t* ex, const uint64_t* anz,
                        const int32_t* pc_nza, const uint64_t* vmask, const uint64_t* tb,
                        const int64_t* toff, const int* ex_b, int64_t* lane_b, narrow_out_t* o,
                        __m512i* lacc_e, __m512i* lacc_b, __m512i* acc) {
    for (int64_t r = 0; r < M; ++r) {
        const int64_t off = (L - (r * N) % L) % L;
        if (off + L > N) continue;
        const int64_t Q = (N - off) / L;
        const uint64_t* ar[3];
        const uint64_t* T[3];
        for (int p = 0; p < np; ++p) {
            ar[p] = ex->a[p] + r * W;
            T[p] = tb + toff[ex_b[p] * L + off];
        }
        narrow_run(W, np, has_ns, bz, L, Q, Q, pc_nza[r], ar, anz + r * W, vmask, T,
                   bz ? tb + toff[off] : NULL, lacc_e, lacc_b, acc);
        if (!bz) {   /* every lane's base bits are A's nz row: pc_nza[r] steps and counts */
            o->max_b += Q * pc_nza[r];
            o->steps_b += Q * pc_nza[r];
            for (int64_t l = 0; l < L; ++l) lane_b[l] += Q * pc_nza[r];
        }
    }
}

/* The narrow path of canna_acc_run (W <= NARROW_W, no hard words, L <= NARROW_LANES): the same
 * sums into lane_e, lane_b and *o. Returns 0, or -1 when memory ran out. */
static int narrow(int64_t M, int64_t N, int64_t K, int64_t L, int64_t npad, int64_t WN,
                  const pairs_t* ex, const int* ex_b, const uint64_t* anz, const int32_t* pc_nza,
                  const uint64_t* bcls, int has_ns, int bz, int64_t* lane_e, int64_t* lane_b,
                  narrow_out_t* o) {
    const int64_t W = (K + 63) / 64, outputs = M * N;
    uint64_t vmask[NARROW_W];
    for (int64_t w = 0; w < W; ++w) vmask[w] = valid_word(K, w);
    /* the offsets (first run column mod L) the rows use, and B's classes at each, [w][l][q] */
    int used_cls[3] = {bz, 0, 0};
    for (int p = 0; p < ex->np; ++p) used_cls[ex_b[p]] = 1;
    int64_t* toff = (int64_t*)malloc(sizeof(int64_t) * (size_t)(3 * L));
    __m512i* lacc = (__m512i*)aligned_alloc(64, sizeof(__m512i) * (size_t)(2 * L));
    uint64_t* tb = NULL;
    int rc = -1;
    if (!toff || !lacc) goto done;
    for (int64_t i = 0; i < 3 * L; ++i) toff[i] = -1;
    int64_t size = 0;
    for (int64_t r = 0; r < M && r < L; ++r) {   /* offsets repeat with period L in r */
        const int64_t off = (L - (r * N) % L) % L;
        if (off + L > N || toff[off] >= 0) continue;
        for (int c = 0; c < 3; ++c)
            if (used_cls[c]) { toff[c * L + off] = size; size += W * L * ((N - off) / L); }
    }
    tb = (uint64_t*)malloc(sizeof(uint64_t) * (size_t)(size > 0 ? size : 1));
    if (!tb) goto done;
    for (int64_t off = 0; off < L; ++off)
        for (int c = 0; c < 3; ++c) {
            if (toff[c * L + off] < 0) continue;
            const int64_t Q = (N - off) / L;
            const uint64_t* b = bcls + c * WN;
            uint64_t* t = tb + toff[c * L + off];
            for (int64_t w = 0; w < W; ++w)
                for (int64_t l = 0; l < L; ++l)
                    for (int64_t q = 0; q < Q; ++q) t[(w * L + l) * Q + q] = b[w * npad + off + q * L + l];
        }
    __m512i* lacc_e = lacc;
    __m512i* lacc_b = lacc + L;
    for (int64_t l = 0; l < 2 * L; ++l) lacc[l] = _mm512_setzero_si512();
    __m512i acc[6];
    for (int i = 0; i < 6; ++i) acc[i] = _mm512_setzero_si512();
#define ROWS(w, np, ns, bz) narrow_rows(w, np, ns, bz, M, N, L, ex, anz, pc_nza, vmask, tb, toff, \
                                        ex_b, lane_b, o, lacc_e, lacc_b, acc)
#define ROWS_NP(w, ns, bz) do { switch (ex->np) { \
        case 0: ROWS(w, 0, ns, bz); break; case 1: ROWS(w, 1, ns, bz); break; \
        case 2: ROWS(w, 2, ns, bz); break; default: ROWS(w, 3, ns, bz); } } while (0)
#define ROWS_W(ns, bz) do { switch (W) { \
        case 1: ROWS_NP(1, ns, bz); break; case 2: ROWS_NP(2, ns, bz); break; \
        case 3: ROWS_NP(3, ns, bz); break; default: ROWS_NP(4, ns, bz); } } while (0)
    if (has_ns) { if (bz) ROWS_W(1, 1); else ROWS_W(1, 0); }
    else { if (bz) ROWS_W(0, 1); else ROWS_W(0, 0); }
#undef ROWS_W
#undef ROWS_NP
#undef ROWS
    for (int64_t l = 0; l < L; ++l) {
        lane_e[l] += _mm512_reduce_add_epi64(lacc_e[l]);
        lane_b[l] += _mm512_reduce_add_epi64(lacc_b[l]);
    }
    o->max_e += _mm512_reduce_add_epi64(acc[0]);
    o->max_b += _mm512_reduce_add_epi64(acc[1]);
    o->steps_e += _mm512_reduce_add_epi64(acc[2]);
    o->steps_b += _mm512_reduce_add_epi64(acc[3]);
    o->ns_steps += _mm512_reduce_add_epi64(acc[4]);
    o->min_hits += _mm512_reduce_add_epi64(acc[5]);
    /* the tiles outside the runs: those starting in a row after its run (or in a row too
     * short for one) */
    for (int64_t r = 0; r < M; ++r) {
        const int64_t off = (L - (r * N) % L) % L;
        const int64_t s0 = off + L > N ? off : off + (N - off) / L * L;
        for (int64_t s = s0; s < N; s += L) {
            const int64_t f0 = r * N + s, nv = (f0 + L < outputs) ? L : outputs - f0;
            narrow_tile(W, N, npad, f0, nv, ex, anz, bcls, vmask, has_ns, lane_e, lane_b, o);
        }
    }
    rc = 0;
done:
    free(toff); free(lacc); free(tb);
    return rc;
}
#endif

/* ---- the whole account ------------------------------------------------------------------ */

/* Account Y = A @ B (A: M x K, B: K x N bit patterns, B[k][j] at B[k * bsk + j * bsj],
 * packed by canna_acc_pack_b or _pack_bt with classes bcls, pc_nzb, binfo, and range-OR
 * tables tabs from canna_acc_tables for `lanes`:
 * those of the nb classes, then, enabled and with a zero/inf/NaN in B, of its z class).
 * out (int64, zeroed by the caller): [0..3] cycles lockstep, decoupled, baseline lockstep,
 * baseline decoupled; [4] words evaluated product by product; [5] plain cycles; [6..7] no-skip
 * cycles lockstep, decoupled; then `lanes` entries of sum exact_count and `lanes` entries of
 * sum base_count per lane (from out + ACC_OUT_HEAD); then the 11 totals of LaneArrayTotals
 * (products, hits, bypassed, tiles, the seven cycle counts; written, not added). Returns 0, or
 * -1 when memory ran out. */
#define ACC_OUT_HEAD 8
int canna_acc_out_head(void) { return ACC_OUT_HEAD; }

int canna_acc_run(int64_t M, int64_t N, int64_t K, const uint32_t* A, const uint32_t* B,
                  int64_t bsk, int64_t bsj, int32_t enabled, int32_t t, int32_t dual, int32_t lanes, int32_t exact_cycles,
                  int64_t npad, const uint64_t* bcls, const int32_t* pc_nzb,
                  const int32_t* binfo, const uint64_t* tabs, int64_t* out) {
    const cfg_t cfg = {enabled, t, dual};
    const int64_t W = (K + 63) / 64, MW = M * W, L = lanes, E1 = exact_cycles - 1;
    const int na = !enabled ? 1 : dual ? 4 : 3;
    const int64_t outputs = M * N, tiles = (outputs + L - 1) / L;
    /* tiles per chunk: count buffers near 256 KiB each, per-lane int32 sums cannot overflow */
    int64_t chunk_tiles = (65536 + L - 1) / L;
    if (chunk_tiles > 2147483647 / K) chunk_tiles = 2147483647 / K;
    if (chunk_tiles < 1) chunk_tiles = 1;
    const int64_t max_rows = (chunk_tiles * L + N - 2) / N + 2;
    const int seg_cap = (int)((L + N - 1) / N + 2);

    uint64_t* acls = (uint64_t*)malloc(sizeof(uint64_t) * (size_t)(na * MW > 0 ? na * MW : 1));
    int32_t* pc_nza = (int32_t*)malloc(sizeof(int32_t) * (size_t)M);
    uint8_t* hard = (uint8_t*)malloc((size_t)W);
    int64_t* hlist = (int64_t*)malloc(sizeof(int64_t) * (size_t)W);
    int32_t *cex = NULL, *cbase = NULL;    /* the wide path's count buffers */
    uint64_t* own_tabs = NULL;
    uint64_t* tmp = (uint64_t*)malloc(sizeof(uint64_t) * (size_t)(4 * seg_cap * W));
    seg_t* segs = (seg_t*)malloc(sizeof(seg_t) * (size_t)seg_cap);
    term_t* terms = (term_t*)malloc(sizeof(term_t) * (size_t)(3 * seg_cap));
    zterm_t* zterms = (zterm_t*)malloc(sizeof(zterm_t) * (size_t)seg_cap);
    uint64_t* vmask = (uint64_t*)malloc(sizeof(uint64_t) * (size_t)W);
    int rc = -1;
    if (!acls || !pc_nza || !hard || !hlist || !tmp || !segs || !terms || !zterms || !vmask)
        goto done;

    int32_t ar[4];
    int aflags[2];
    /* without subnormals in A only nz (and dual's n & ~q) are written: n is nz (aliased) */
#if ACC_SIMD
    const int plain = pack_a_plain(M, K, A, &cfg, acls, pc_nza, ar, aflags);
#else
    const int plain = 0;
#endif
    if (!plain) pack_a(M, K, A, &cfg, na, acls, pc_nza, ar, aflags);
    const int any_spec_a = aflags[0], any_sub_a = aflags[1];
    const uint64_t* cls_n = acls + 2 * MW;
    const int any_spec_b = binfo[4], any_sub_b = binfo[5];

    /* words evaluated product by product: the exact-set classes of A are zeroed there */
    const int64_t nhard = hard_words(M, N, K, A, B, bsk, bsj, &cfg, ar, binfo, hard);
    int64_t nh = 0;
    for (int64_t w = 0; w < W; ++w) if (hard[w]) hlist[nh++] = w;
    if (plain && na > 1) {
        if (nhard) memcpy(acls + 2 * MW, acls, sizeof(uint64_t) * (size_t)MW);   /* n, to zero */
        else cls_n = acls;
    }
    if (nhard)
        for (int c = 1; c < na; ++c)
            for (int64_t i = 0; i < M; ++i)
                for (int64_t h = 0; h < nh; ++h) acls[c * MW + i * W + hlist[h]] = 0;

    const int64_t WN = BSTRIDE(W, npad);
    pairs_t ex = {{0}, {0}, 0}, base = {{acls}, {bcls}, 1};
    int ex_b[3] = {0, 0, 0}, base_b[3] = {0, 0, 0};
    if (!enabled) {
        ex = base;
    } else {
        if (any_sub_a) { ex.a[ex.np] = acls + MW; ex.b[ex.np] = bcls; ex_b[ex.np++] = 0; }
        if (!dual) {
            ex.a[ex.np] = cls_n; ex.b[ex.np] = bcls + WN; ex_b[ex.np++] = 1;
        } else {
            if (any_sub_b) { ex.a[ex.np] = cls_n; ex.b[ex.np] = bcls + WN; ex_b[ex.np++] = 1; }
            ex.a[ex.np] = acls + 3 * MW; ex.b[ex.np] = bcls + 2 * WN; ex_b[ex.np++] = 2;
        }
    }
    /* no-skip: without any zero/inf/NaN operand it is the CFPU's own count (fast = hit);
     * exact mode has no hits (it is the plain count) */
    const int with_ns = enabled && (any_spec_a || any_spec_b);
    ns_t nsx = {NULL, {NULL, NULL}, NULL, vmask, popacc_zero(), 0, 0};
    ns_t* ns = with_ns ? &nsx : NULL;
    popacc_t pop_e = popacc_zero(), pop_b = popacc_zero();
    int64_t pop_b1 = 0, pop_hard = 0, max_e = 0, max_b = 0;
    int64_t* lane_e = out + ACC_OUT_HEAD;
    int64_t* lane_b = out + ACC_OUT_HEAD + L;
#if ACC_SIMD
    if (acc_narrow && !nhard && W <= NARROW_W && L <= NARROW_LANES) {
        const pairs_t none = {{0}, {0}, 0};
        narrow_out_t no = {0, 0, 0, 0, 0, 0};
        if (narrow(M, N, K, L, npad, BSTRIDE(W, npad), enabled ? &ex : &none, ex_b, acls, pc_nza,
                   bcls, with_ns, any_spec_b != 0, lane_e, lane_b, &no) != 0)
            goto done;
        max_e = no.max_e;
        max_b = no.max_b;
        pop_b1 = no.steps_b;
        pop_hard = no.steps_e;      /* added to the exact steps as the hard words' are */
        nsx.pop_hard = no.ns_steps;
        nsx.min_hits = no.min_hits;
        goto counted;
    }
#endif
    if (!tabs) {     /* canna_acc_once left them to the wide path */
        const int classes = !enabled ? 1 : (dual ? 3 : 2) + (any_spec_b != 0);
        own_tabs = (uint64_t*)malloc(sizeof(uint64_t) * (size_t)(classes * 2 * N * W));
        if (!own_tabs) goto done;
        canna_acc_tables(N, W, npad, classes, bcls, lanes, own_tabs);
        tabs = own_tabs;
    }
    cex = (int32_t*)malloc(sizeof(int32_t) * (size_t)(max_rows * N));
    cbase = (int32_t*)malloc(sizeof(int32_t) * (size_t)(max_rows * N));
    if (!cex || !cbase) goto done;
    set_tabs_t st_ex = {0}, st_base = {0};
    set_tabs(&st_ex, &ex, ex_b, tabs, N, W);
    set_tabs(&st_base, &base, base_b, tabs, N, W);
    if (with_ns) {
        for (int64_t w = 0; w < W; ++w) vmask[w] = hard[w] ? 0 : valid_word(K, w);
        if (any_spec_a) nsx.nza = acls;   /* class 0: nz, never zeroed */
        if (any_spec_b) {
            const int zi = dual ? 3 : 2;   /* the z class follows the nb classes */
            nsx.zb[0] = tabs + (int64_t)zi * 2 * N * W;
            nsx.zb[1] = nsx.zb[0] + N * W;
            nsx.zb_cls = bcls + zi * WN;
        }
    }
    /* base_count(i, j): row constant when B has no zero/inf/NaN, column constant when A has
     * none, else a popcount GEMM */
    const int base_mode = !any_spec_b ? 1 : !any_spec_a ? 2 : 0;
    int64_t r = 0, c = 0;   /* row and column of the next tile's first output */

    for (int64_t t0 = 0; t0 < tiles; t0 += chunk_tiles) {
        const int64_t t1 = (t0 + chunk_tiles < tiles) ? t0 + chunk_tiles : tiles;
        const int64_t f_hi = (t1 * L < outputs) ? t1 * L : outputs;
        const int64_t r0 = r;
        const int64_t off = r0 * N;     /* buffer index = flat - off */
        if (base_mode == 0) gemm_flat(&base, t0 * L, f_hi, W, npad, N, cbase);
        if (enabled) gemm_flat(&ex, t0 * L, f_hi, W, npad, N, cex);

        for (int64_t tt = t0; tt < t1;) {
            if (!nhard && c + L <= N) {   /* a run of whole tiles inside row r */
                int64_t n = (N - c) / L;
                if (n > t1 - tt) n = t1 - tt;
                const int64_t f0 = r * N + c;
                const int32_t* bcnt = base_mode == 1 ? NULL
                                    : base_mode == 0 ? cbase + (f0 - off) : pc_nzb + c;
                if (base_mode == 1) {
                    const int64_t v = n * pc_nza[r];
                    max_b += v;
                    pop_b1 += v;
                    for (int64_t l = 0; l < L; ++l) lane_b[l] += v;
                } else {
                    run_row(&st_base, NULL, NULL, r, c, n, L, W, bcnt, &max_b, &pop_b, lane_b);
                }
                if (enabled) {
                    const int64_t max_e0 = max_e;
                    run_row(&st_ex, ns, bcnt, r, c, n, L, W, cex + (f0 - off), &max_e, &pop_e, lane_e);
                    /* base row constant: the fewest hits of a tile are pc_nza[r] - its max exact */
                    if (ns && base_mode == 1) ns->min_hits += n * pc_nza[r] - (max_e - max_e0);
                }
                tt += n;
                c += n * L;
                if (c == N) { c = 0; ++r; }
                continue;
            }
            const int64_t f0 = tt * L, nv = (f0 + L < outputs) ? L : outputs - f0;
            int nseg = 0;
            for (int64_t left = nv; left > 0;) {   /* one segment per row the tile touches */
                const int64_t take = (left < N - c) ? left : N - c;
                segs[nseg].r = r; segs[nseg].c0 = c; segs[nseg].c1 = c + take; ++nseg;
                left -= take;
                c += take;
                if (c == N) { c = 0; ++r; }
            }
            int32_t mx_e = 0, mx_b = 0;
            if (nhard) {   /* the hard words, product by product (enabled) */
                int32_t* ce = cex + (f0 - off);
                for (int64_t h = 0; h < nh; ++h) {
                    uint64_t any = 0, any_slow = 0;
                    for (int s = 0, l = 0; s < nseg; ++s)
                        for (int64_t j = segs[s].c0; j < segs[s].c1; ++j, ++l) {
                            uint64_t slow;
                            const uint64_t d = direct_word(A, B, bsk, bsj, K, segs[s].r, j, hlist[h], &cfg, &slow);
                            ce[l] += __builtin_popcountll(d);
                            any |= d;
                            any_slow |= slow;
                        }
                    pop_hard += __builtin_popcountll(any);
                    nsx.pop_hard += __builtin_popcountll(any_slow);
                }
            }
            if (ns) {   /* the fewest hits among the tile's lanes (hits = base - exact) */
                const int32_t* ce = cex + (f0 - off);
                int32_t mh = INT32_MAX;
                if (base_mode == 0) {
                    mh = min_diff(cbase + (f0 - off), ce, nv);
#if ACC_SIMD
                } else if (base_mode == 1 && nv <= 16) {   /* base = pc_nza of each lane's row */
                    __m512i bv = _mm512_setzero_si512();
                    for (int s = 0, l = 0; s < nseg; ++s) {
                        const int len = (int)(segs[s].c1 - segs[s].c0);
                        bv = _mm512_mask_mov_epi32(bv, (__mmask16)(((1u << len) - 1u) << l),
                                                   _mm512_set1_epi32(pc_nza[segs[s].r]));
                        l += len;
                    }
                    const __mmask16 vm = tail16(nv);
                    mh = _mm512_mask_reduce_min_epi32(vm, _mm512_sub_epi32(bv, _mm512_maskz_loadu_epi32(vm, ce)));
#endif
                } else {
                    for (int s = 0, l = 0; s < nseg; ++s) {
                        const int64_t len = segs[s].c1 - segs[s].c0;
                        const int32_t h = base_mode == 1 ? pc_nza[segs[s].r] - max_counts(ce + l, len)
                                                         : min_diff(pc_nzb + segs[s].c0, ce + l, len);
                        mh = h < mh ? h : mh;
                        l += (int)len;
                    }
                }
                ns->min_hits += mh;
            }
            if (enabled) mx_e = add_lanes(cex + (f0 - off), nv, lane_e);
            if (base_mode == 0) {
                mx_b = add_lanes(cbase + (f0 - off), nv, lane_b);
            } else {
                for (int s = 0, l = 0; s < nseg; ++s) {
                    const int64_t len = segs[s].c1 - segs[s].c0;
                    int32_t m;
                    if (base_mode == 1) {
                        m = pc_nza[segs[s].r];
                        for (int64_t q = 0; q < len; ++q) lane_b[l + q] += m;
                    } else {
                        m = add_lanes(pc_nzb + segs[s].c0, len, lane_b + l);
                    }
                    mx_b = m > mx_b ? m : mx_b;
                    l += (int)len;
                }
            }
            max_e += mx_e;
            max_b += mx_b;
            /* lockstep: steps where some valid lane is exact */
            if (base_mode == 1 && nseg == 1) {
                pop_b1 += pc_nza[segs[0].r];
            } else {
                const int nt = tile_terms(segs, nseg, &st_base, N, W, npad, L, terms, tmp);
                terms_pop(terms, nt, W, &pop_b);
            }
            if (enabled) {
                const int nt = tile_terms(segs, nseg, &st_ex, N, W, npad, L, terms, tmp);
                if (ns) {
                    const int nz = ns_terms(segs, nseg, ns, N, W, npad, L, zterms,
                                            tmp + (int64_t)3 * seg_cap * W);
                    terms_pop_ns(terms, nt, zterms, nz, W, &pop_e, ns);
                } else {
                    terms_pop(terms, nt, W, &pop_e);
                }
            }
            ++tt;
        }
    }
counted: __attribute__((unused));
    if (!enabled) {
        for (int64_t l = 0; l < L; ++l) lane_e[l] = lane_b[l];
        max_e = max_b;
    }
    const int64_t steps_b = popacc_sum(pop_b) + pop_b1;
    const int64_t steps_e = enabled ? popacc_sum(pop_e) + pop_hard : steps_b;
    out[0] += tiles * K + E1 * steps_e;
    out[1] += tiles * K + E1 * max_e;
    out[2] += tiles * K + E1 * steps_b;
    out[3] += tiles * K + E1 * max_b;
    out[4] += nhard;
    const int64_t cycles_plain = tiles * K * (int64_t)exact_cycles;
    out[5] += cycles_plain;
    if (!enabled) {          /* no hits: every product exact_cycles */
        out[6] += cycles_plain;
        out[7] += cycles_plain;
    } else if (!ns) {        /* no bypass anywhere: slow = exact */
        out[6] += tiles * K + E1 * steps_e;
        out[7] += tiles * K + E1 * max_e;
    } else {
        out[6] += tiles * K + E1 * (popacc_sum(nsx.pop) + nsx.pop_hard);
        out[7] += tiles * K + E1 * (tiles * K - nsx.min_hits);
    }
    {   /* the totals, in canna.sim.lanes.LaneArrayTotals' order */
        int64_t* tot = out + ACC_OUT_HEAD + 2 * L;
        int64_t ex_sum = 0, base_sum = 0;
        for (int64_t l = 0; l < L; ++l) { ex_sum += lane_e[l]; base_sum += lane_b[l]; }
        const int64_t products = M * N * K;
        const int64_t fields[11] = {products, base_sum - ex_sum, products - base_sum, tiles,
                                    out[0], out[1], out[2], out[3], out[5], out[6], out[7]};
        for (int f = 0; f < 11; ++f) tot[f] = fields[f];
    }
    rc = 0;
done:
    free(acls); free(pc_nza); free(hard); free(hlist); free(cex); free(cbase); free(tmp);
    free(segs); free(terms); free(zterms); free(vmask); free(own_tabs);
    return rc;
}

/* canna_acc_pack_b (bsj = 1) or canna_acc_pack_bt (bsk = 1), canna_acc_tables and
 * canna_acc_run in one call, for a B accounted once (a training step's operands: the weights
 * change after it), without the caller allocating or keeping the packed classes. */
int canna_acc_once(int64_t M, int64_t N, int64_t K, const uint32_t* A, const uint32_t* B,
                   int64_t bsk, int64_t bsj, int32_t enabled, int32_t t, int32_t dual,
                   int32_t lanes, int32_t exact_cycles, int64_t* out) {
    const int64_t W = (K + 63) / 64, npad = (N + 15) / 16 * 16, WN = BSTRIDE(W, npad);
    const int nb = !enabled ? 1 : dual ? 3 : 2;
    uint64_t* bcls = (uint64_t*)malloc(sizeof(uint64_t) * (size_t)((nb + (enabled != 0)) * WN));
    int32_t* pc_nz = (int32_t*)malloc(sizeof(int32_t) * (size_t)N);
    int32_t info[6];
    int rc = -1;
    if (!bcls || !pc_nz) goto done;
    pack_b(K, N, B, bsk, bsj, enabled, t, dual, npad, bcls, pc_nz, info);
    /* no tables: canna_acc_run builds them where its path needs them (the narrow one does not) */
    rc = canna_acc_run(M, N, K, A, B, bsk, bsj, enabled, t, dual, lanes, exact_cycles, npad, bcls,
                       pc_nz, info, NULL, out);
done:
    free(bcls); free(pc_nz);
    return rc;
}

/* Whether canna_acc_run may take the narrow path (1, the default) or always the wide one (0):
 * tests and benches compare the two. Returns the previous setting; 0 without SIMD. */
int canna_acc_set_narrow(int on) {
#if ACC_SIMD
    const int was = acc_narrow;
    acc_narrow = on;
    return was;
#else
    (void)on;
    return 0;
#endif
}
