/* C twin of the golden lane-array model (canna.sim.golden + canna.sim.lanes), bit for bit.
 *
 * The specification is the NumPy code: golden.mul_bits (the CFPU product: IEEE binary32
 * multiply, round to nearest even, gradual underflow, canonical NaN 0x7FC00000, or the
 * approximate product on a hit), golden.add (IEEE binary32 add, RNE, canonical NaN) and
 * lanes.run_lane_array (tiles of `lanes` consecutive outputs, sequential accumulation from +0.0,
 * per-lane counts, lockstep/decoupled cycles). tests/sim/test_lanes_native.py checks this file
 * against it on millions of vectors.
 *
 * The exact product and the sum use the host's binary32 arithmetic: on x86-64 (SSE) float
 * multiply and add are IEEE-754 round-to-nearest-even with subnormals (no flush-to-zero: this
 * file must never be built with -ffast-math, and is built with -ffp-contract=off so that no
 * multiply-add is fused); only NaN payloads differ from the canonical NaN, so they are replaced.
 *
 * A configuration is (enabled, tuning_bits, policy) with policy 0 = "b", 1 = "dual".
 */
#include <stdint.h>
#include <string.h>

#define CANON_NAN 0x7FC00000u

typedef struct { int32_t enabled, tuning_bits, dual; } cfg_t;

static inline float f_of(uint32_t x) { float f; memcpy(&f, &x, 4); return f; }
static inline uint32_t u_of(float f) { uint32_t x; memcpy(&x, &f, 4); return x; }
static inline uint32_t canon(uint32_t x) {
    return ((x & 0x7F800000u) == 0x7F800000u && (x & 0x007FFFFFu)) ? CANON_NAN : x;
}

static inline int qualifies(uint32_t frac, int t) {
    uint32_t top = frac >> (22 - t);
    uint32_t ones = (1u << (t + 1)) - 1u;
    return top == 0 || top == ones;
}

/* golden.mul_bits for one pair; *hit = the product ran in approximate mode. */
static inline uint32_t mul1(uint32_t a, uint32_t b, const cfg_t* c, int* hit) {
    *hit = 0;
    if (c->enabled) {
        uint32_t ea = (a >> 23) & 0xFF, eb = (b >> 23) & 0xFF;
        if (ea != 0 && ea != 255 && eb != 0 && eb != 255) {
            uint32_t fa = a & 0x7FFFFF, fb = b & 0x7FFFFF;
            int t = c->tuning_bits;
            int qb = qualifies(fb, t);
            int use_b = c->dual ? qb : 1;
            int q = c->dual ? (qb || qualifies(fa, t)) : qb;
            if (q) {
                int32_t e_x = (int32_t)(use_b ? eb : ea);
                int32_t m1 = (int32_t)((use_b ? fb : fa) >> 22);
                int32_t e_o = (int32_t)(use_b ? ea : eb);
                uint32_t f_o = use_b ? fa : fb;
                int32_t e = e_o + e_x - 127 + m1;
                if (e >= 1 && e <= 254) {
                    *hit = 1;
                    return ((a ^ b) & 0x80000000u) | ((uint32_t)e << 23) | f_o;
                }
            }
        }
    }
    volatile float p = f_of(a) * f_of(b);  /* volatile: one rounding, never fused */
    return canon(u_of(p));
}

static inline uint32_t add1(uint32_t a, uint32_t b) {
    volatile float s = f_of(a) + f_of(b);
    return canon(u_of(s));
}

static inline int special(uint32_t x) {
    return ((x >> 23) & 0xFF) == 0xFF || (x & 0x7FFFFFFFu) == 0;
}

/* Element-wise twins of golden.mul_bits (bits, hit) and golden.add (bits). */
void canna_golden_mul(int64_t n, const uint32_t* a, const uint32_t* b, int32_t enabled,
                      int32_t tuning_bits, int32_t dual, uint32_t* out, uint8_t* hit) {
    cfg_t c = {enabled, tuning_bits, dual};
    for (int64_t i = 0; i < n; ++i) {
        int h;
        out[i] = mul1(a[i], b[i], &c, &h);
        hit[i] = (uint8_t)h;
    }
}

void canna_golden_add(int64_t n, const uint32_t* a, const uint32_t* b, uint32_t* out) {
    for (int64_t i = 0; i < n; ++i) out[i] = add1(a[i], b[i]);
}

/* lanes.run_lane_array on tiles tile_lo .. tile_hi-1 of Y = A @ B (A: M x K, BT = B^T: N x K,
 * bit patterns). cfgs: `lanes` configurations x 3 ints (lane l uses cfgs[3l..3l+2]).
 * out: M x N (only this range's outputs are written). Per-lane results (added to, int64[lanes]):
 * products, hits, bypassed, busy (lockstep busy = sum of occupancies). sums (added to,
 * int64[7]): cycles lockstep, cycles decoupled, baseline (zero skipping only: fast = bypass)
 * lockstep and decoupled, plain (every product exact_cycles), no-skip (fast = hit only)
 * lockstep and decoupled. */
#define MAXL 256
int canna_golden_lanes(int64_t M, int64_t N, int64_t K, const uint32_t* A, const uint32_t* BT,
                       int32_t lanes, int32_t exact_cycles, const int32_t* cfgs, uint32_t* out,
                       int64_t* products, int64_t* hits, int64_t* bypassed, int64_t* busy,
                       int64_t* sums, int64_t tile_lo, int64_t tile_hi) {
    if (lanes < 1 || lanes > MAXL) return -1;
    const int64_t outputs = M * N;
    cfg_t cfg[MAXL];
    const uint32_t* arow[MAXL];
    const uint32_t* brow[MAXL];
    uint32_t acc[MAXL];
    int64_t lsum[MAXL], bsum[MAXL], nsum[MAXL];
    for (int l = 0; l < lanes; ++l) {
        cfg[l].enabled = cfgs[3 * l]; cfg[l].tuning_bits = cfgs[3 * l + 1]; cfg[l].dual = cfgs[3 * l + 2];
    }
    for (int64_t t = tile_lo; t < tile_hi; ++t) {
        int nv = 0;  /* valid lanes: 0 .. nv-1 */
        for (int l = 0; l < lanes; ++l) {
            const int64_t flat = t * lanes + l;
            if (flat >= outputs) break;
            arow[l] = A + (flat / N) * K;
            brow[l] = BT + (flat % N) * K;
            acc[l] = 0;
            lsum[l] = bsum[l] = nsum[l] = 0;
            ++nv;
        }
        int64_t ls = 0, bls = 0, nls = 0;
        for (int64_t k = 0; k < K; ++k) {
            int step = 0, bstep = 0, nstep = 0;
            for (int l = 0; l < nv; ++l) {
                const uint32_t a = arow[l][k], b = brow[l][k];
                int h;
                const uint32_t p = mul1(a, b, &cfg[l], &h);
                acc[l] = add1(acc[l], p);
                const int byp = special(a) || special(b);
                const int lat = (h || byp) ? 1 : exact_cycles;
                const int blat = byp ? 1 : exact_cycles;
                const int nlat = h ? 1 : exact_cycles;
                hits[l] += h;
                bypassed[l] += byp;
                lsum[l] += lat;
                bsum[l] += blat;
                nsum[l] += nlat;
                if (lat > step) step = lat;
                if (blat > bstep) bstep = blat;
                if (nlat > nstep) nstep = nlat;
            }
            ls += step;
            bls += bstep;
            nls += nstep;
        }
        int64_t dc = 0, bdc = 0, ndc = 0;
        for (int l = 0; l < nv; ++l) {
            out[t * lanes + l] = acc[l];
            products[l] += K;
            busy[l] += lsum[l];
            if (lsum[l] > dc) dc = lsum[l];
            if (bsum[l] > bdc) bdc = bsum[l];
            if (nsum[l] > ndc) ndc = nsum[l];
        }
        sums[0] += ls; sums[1] += dc; sums[2] += bls; sums[3] += bdc;
        sums[4] += K * (int64_t)exact_cycles; sums[5] += nls; sums[6] += ndc;
    }
    return 0;
}
