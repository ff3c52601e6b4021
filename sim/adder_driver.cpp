// Driver of the Verilated lane accumulator (canna.hw.adder.FAdd, combinational): streams whole
// vector arrays through it in C++ (sim/adder_cosim.py loads this with ctypes).
#include <cstdint>
#include <memory>

#include "verilated.h"
#include "Vfadd.h"

namespace {
struct Adder {
    std::unique_ptr<VerilatedContext> ctx;
    std::unique_ptr<Vfadd> top;
    Adder() : ctx(new VerilatedContext), top(new Vfadd(ctx.get(), "top")) {}
};
}  // namespace

extern "C" {
#pragma GCC visibility push(default)  // the C interface; the model stays hidden

void* canna_adder_new() { return new Adder(); }

void canna_adder_free(void* h) { delete static_cast<Adder*>(h); }

// bits[i], flags[i] = FAdd(a[i], b[i]) for i < n (flags: inexact, underflow, overflow,
// infinite, invalid in bits 0..4).
void canna_adder_run(void* h, int64_t n, const uint32_t* a, const uint32_t* b, uint32_t* bits,
                     uint8_t* flags) {
    Vfadd* top = static_cast<Adder*>(h)->top.get();
    for (int64_t i = 0; i < n; ++i) {
        top->a = a[i];
        top->b = b[i];
        top->eval();
        bits[i] = top->bits;
        flags[i] = static_cast<uint8_t>(top->flags);
    }
}

#pragma GCC visibility pop
}  // extern "C"
