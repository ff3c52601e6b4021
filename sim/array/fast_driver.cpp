// Fast co-simulation driver of the Verilated lane array (canna.hw.array.LaneArray).
//
// Python (sim/array/fast.py) hands over whole matrices through ctypes; every clock cycle runs
// here. The array's per-lane ports are reached through pointers set up once from the generated
// header "array_ports.h" (LANES, BIND_LANES, the top class and Verilator's names of the ports),
// so this file does not depend on the lane count.
//
// One eval() per clock cycle. The fast build's Verilog clocks every register on both edges of
// `clk` (`always @(edge clk)`, see fast.py's dual_edge_verilog), so one toggle of `clk` plus
// one eval is one clock cycle: the eval first settles the combinational logic with the cycle's
// inputs and then applies the clock edge. Before the edge the driver needs each lane's
// `i[l].ready` and the output beat `o`; it reads them from the previous eval: `o` depends on
// registers only, and `i[l].ready` on registers and the `valid` inputs (`o.ready` is tied high
// in the fast build's Verilog: fast.py's tie_top_inputs), never on the payload (the lane
// decides on its held register; the discipline on readiness and validity).
// So the values settled after the previous edge are this cycle's values as long as the
// `valid` inputs do not change; when they do (a lane's stream runs out, once per run), or
// a control input changes (configuration write, clear), an extra eval without a clock edge
// settles them first. Any mistake here would show up as a result, counter or cycle mismatch
// against the golden model, which every run checks.
//
// Cycle protocol: (outputs settled) sample o (a tile beat) and every i[l].ready (a handshake),
// toggle clk and eval (the edge samples the payloads on the inputs), then present the next
// operation's payload on the lanes that advanced. The operand streams never run dry and the
// output is always ready, so the RTL cycle counter equals the golden model's cycle count.
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "verilated.h"
#include "array_ports.h"

namespace {

struct Array {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<TOP_CLASS> top;
    uint32_t* payload[LANES];
    CData* valid[LANES];
    CData* ready[LANES];
    const IData* held_a[LANES];  // the lanes' held operand registers (activity probe)
    const IData* held_b[LANES];
    uint64_t total_cycles = 0;

    Array() : ctx(new VerilatedContext), top(new TOP_CLASS(ctx.get(), "top")) {
        BIND_LANES(top, payload, valid, ready);
        BIND_PROBES(top, held_a, held_b);
        top->clk = 0;
        for (int l = 0; l < LANES; ++l) *valid[l] = 0;
        top->P_CFG_VALID = 0;
        top->clear = 0;
        // no reset pulse: the fast build ties rst low, and every register starts at its reset
        // value (Amaranth writes it as the register's Verilog initialiser)
        top->eval();
    }

    // One clock cycle: toggle clk (every register is clocked on both edges), settle, edge.
    inline void tick() {
        top->clk = !top->clk;
        top->eval();
        ++total_cycles;
    }
};

inline int popcount32(uint32_t x) { return __builtin_popcount(x); }

}  // namespace

extern "C" {
#pragma GCC visibility push(default)  // the C interface; the model stays hidden

int canna_array_lanes() { return LANES; }

void* canna_array_new() {
    return new Array();
}

void canna_array_free(void* h) { delete static_cast<Array*>(h); }

// Write one configuration (cfg payload word, see config_write_layout) in one cycle.
void canna_array_config(void* h, uint32_t word) {
    Array* s = static_cast<Array*>(h);
    s->top->P_CFG_VALID = 1;
    s->top->P_CFG_PAYLOAD = word;
    s->tick();
    s->top->P_CFG_VALID = 0;
    s->top->eval();
}

// Y = A @ B with A (M x K, row-major) and BT = B transposed (N x K, row-major), all as bit
// patterns. out: M x N. counters: N_COUNTERS x LANES (ops, hits, bypass, busy, mul).
// stats: [0] RTL cycle counter, [1] wall cycles (first accept .. last beat, inclusive),
// [2] simulated clock cycles in this call, [3] evals in this call. activity (may be null):
// LANES x 6: per lane the bit toggles of its registers held_a, held_b, acc over the run
// (sampled every cycle), then their values at the start of the run.
// Returns 0, or -1 when the array stops making progress.
// Only tiles tile_lo .. tile_hi - 1 run (tile_hi < 0: to the end), so that several models can
// share one matmul (tiles are independent; cycles and counters add up).
int canna_array_matmul(void* h, int64_t M, int64_t N, int64_t K, const uint32_t* A,
                       const uint32_t* BT, uint32_t* out, uint64_t* counters, uint64_t* stats,
                       uint64_t* activity, int64_t tile_lo, int64_t tile_hi) {
    Array* s = static_cast<Array*>(h);
    TOP_CLASS* top = s->top.get();
    const int64_t outputs = M * N;
    const int64_t all_tiles = (outputs + LANES - 1) / LANES;
    if (tile_hi < 0 || tile_hi > all_tiles) tile_hi = all_tiles;
    if (tile_lo < 0) tile_lo = 0;
    const int64_t tiles = tile_hi > tile_lo ? tile_hi - tile_lo : 0;
    const int64_t total = tiles * K;  // operations per lane
    // clear the counters
    top->clear = 1;
    s->tick();
    top->clear = 0;
    const uint64_t start_cycles = s->total_cycles;
    uint64_t evals = 0;
    const uint32_t* acc = reinterpret_cast<const uint32_t*>(&top->acc);
    auto regs = [&](int l, int r) -> uint32_t {  // register r of lane l: held_a, held_b, acc
        return r == 0 ? *s->held_a[l] : r == 1 ? *s->held_b[l] : acc[l];
    };
    uint32_t prev[LANES][3];
    auto sample = [&](uint64_t* act) {  // toggles since the last sample (registers settled)
        for (int l = 0; l < LANES; ++l)
            for (int r = 0; r < 3; ++r) {
                const uint32_t v = regs(l, r);
                act[l * 6 + r] += popcount32(prev[l][r] ^ v);
                prev[l][r] = v;
            }
    };
    for (int l = 0; l < LANES; ++l)
        for (int r = 0; r < 3; ++r) {
            prev[l][r] = regs(l, r);
            if (activity) activity[l * 6 + 3 + r] = prev[l][r];
        }

    int64_t pos[LANES];          // next operation of each lane (tile * K + k)
    int64_t kk[LANES];           // pos % K
    const uint32_t* arow[LANES]; // operand rows of each lane's current output
    const uint32_t* brow[LANES];
    bool pad[LANES];
    auto bind = [&](int l, int64_t tile) {
        const int64_t flat = tile * LANES + l;
        pad[l] = flat >= outputs;
        if (!pad[l]) {
            arow[l] = A + (flat / N) * K;
            brow[l] = BT + (flat % N) * K;
        }
    };
    auto present = [&](int l) {  // drive lane l's next operation
        uint32_t* p = s->payload[l];
        const int64_t k = kk[l];
        const uint32_t last = k == K - 1 ? OP_LAST : 0u;   // word layout: canna.spec.layouts
        if (pad[l]) {
            p[OP_A_WORD] = 0; p[OP_B_WORD] = 0; p[OP_FLAGS_WORD] = last | OP_NOP;
        } else {
            p[OP_A_WORD] = arow[l][k]; p[OP_B_WORD] = brow[l][k]; p[OP_FLAGS_WORD] = last;
        }
    };
    for (int l = 0; l < LANES; ++l) {
        pos[l] = 0;
        kk[l] = 0;
        if (total) {
            bind(l, tile_lo);
            present(l);
        }
        *s->valid[l] = total > 0;
    }
    top->eval();  // settle the new inputs: ready is read before the first edge
    ++evals;
    int64_t beats = 0;
    int64_t first_accept = -1, last_beat = -1;
    int64_t cycle = 0;
    int64_t idle = 0;
    bool acc_l[LANES];
    while (beats < tiles) {
        bool any = false;
        if (top->P_O_VALID) {
            const uint32_t* o = reinterpret_cast<const uint32_t*>(&top->P_O_PAYLOAD);
            const int64_t base = (tile_lo + beats) * LANES;
            const int64_t n = outputs - base < LANES ? outputs - base : LANES;
            std::memcpy(out + base, o, n * sizeof(uint32_t));
            ++beats;
            last_beat = cycle;
            any = true;
        }
        for (int l = 0; l < LANES; ++l) {
            acc_l[l] = *s->valid[l] && *s->ready[l];
            any |= acc_l[l];
        }
        if (activity) sample(activity);
        if (first_accept < 0) {
            for (int l = 0; l < LANES; ++l)
                if (acc_l[l]) { first_accept = cycle; break; }
        }
        s->tick();  // the edge samples the presented payloads
        ++evals;
        ++cycle;
        bool valid_changed = false;
        for (int l = 0; l < LANES; ++l) {
            if (!acc_l[l]) continue;
            ++pos[l];
            if (pos[l] >= total) {
                *s->valid[l] = 0;
                valid_changed = true;
                continue;
            }
            if (++kk[l] == K) {
                kk[l] = 0;
                bind(l, tile_lo + pos[l] / K);
            }
            present(l);
        }
        if (valid_changed) {  // settle: ready may depend on valid
            top->eval();
            ++evals;
        }
        idle = any ? 0 : idle + 1;
        if (idle > 1000) return -1;
    }
    if (activity) sample(activity);
    const uint32_t* c[N_COUNTERS] = {COUNTER_PTRS(top)};
    for (int n = 0; n < N_COUNTERS; ++n)
        for (int l = 0; l < LANES; ++l) counters[n * LANES + l] = c[n][l];
    stats[0] = top->cycles;
    stats[1] = (first_accept < 0) ? 0 : (uint64_t)(last_beat - first_accept + 1);
    stats[2] = s->total_cycles - start_cycles;
    stats[3] = evals;
    return 0;
}

#pragma GCC visibility pop
}  // extern "C"
