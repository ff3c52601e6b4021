"""scripts/activity.py's VCD toggle counter (count_toggles), the source of the energy model's
per-operation toggles: a hand-written VCD with known counts (aliased nets, struct field views,
x/z, several changes within one time step, nets outside the design), and a VCD the Amaranth
simulator wrote, against toggles counted from the simulated values themselves."""
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from canna.sim.testbench import with_sync_domain
from helpers import load_script

activity = load_script("activity")

# Ownership as count_toggles defines it (under top scope "cfpu"): a net declared in a child's
# scope belongs to that child (in both children when declared in both); ``top`` keeps nets only
# its own scope declares; its i__/o__ nets are the ``interface``; clk, rst, struct field views
# ("name.field") and nets outside "cfpu" are not counted. Per time step only the last value of a
# net counts; x and z count as 0; the first value of a net is no toggle.
HAND_VCD = """\
$timescale 1 fs $end
$scope module bench $end
$var wire 4 ? outside $end
$scope module cfpu $end
$var wire 1 ! clk $end
$var wire 1 " rst $end
$var wire 8 # i__payload $end
$var wire 4 $ i__payload.a $end
$var wire 1 % o__valid $end
$var wire 8 & stage_reg $end
$var wire 4 ' shared $end
$var wire 4 ( port $end
$scope module unpack $end
$var wire 4 ' shared $end
$var wire 4 ( port $end
$var wire 2 ) cls $end
$scope module inner $end
$var wire 3 * deep $end
$upscope $end
$upscope $end
$scope module sigmul $end
$var wire 4 ' shared $end
$var wire 16 + p $end
$upscope $end
$upscope $end
$upscope $end
$enddefinitions $end
#0
$dumpvars
0!
0"
b0 #
b0 $
0%
bx &
b0 '
b0 (
b0 )
b0 *
b0 +
b0 ?
$end
#10
1!
b10110011 #
b0011 $
1%
b1111 &
b1 '
b1010 (
b11 )
b101 *
b1111000011110000 +
b1111 ?
#20
0!
b1 )
b0 )
b1 '
1%
b1z1x &
#30
b0 (
b1010 (
b111 *
0%
b10110010 #
b0 '
#40
1%
#50
x%
"""


def test_hand_written_vcd(tmp_path):
    vcd = tmp_path / "hand.vcd"
    vcd.write_text(HAND_VCD)
    # step by step (net: bits changed):
    #   #10 i__payload 5, o__valid 1 | stage_reg 4 (x -> 1111) | shared 1 (unpack and sigmul),
    #       port 2, cls 2, deep 2 | p 8                          -> total 25 (shared once)
    #   #20 cls 11 -> 01 -> 00: 2 | stage_reg 1111 -> 1z1x = 1010: 2; shared, o__valid same
    #   #30 port 1010 -> 0 -> 1010: 0 | deep 1 | o__valid 1, i__payload 1 | shared 1
    #   #40 o__valid 1;  #50 o__valid x = 0: 1 (the last step, no # after it)
    want = {"interface": 5 + 1 + 1 + 1 + 1 + 1, "top": 4 + 2,
            "unpack": (1 + 2 + 2 + 2) + 2 + (1 + 1), "sigmul": (1 + 8) + 1,
            "_total": 25 + 4 + 4 + 1 + 1}
    got = activity.count_toggles(vcd)
    assert got == want
    # another top scope: unpack's own nets are its "top", its child "inner" a group
    assert activity.count_toggles(vcd, top_scope="unpack") == {
        "top": 2 + 2 + 4, "inner": 3, "_total": 11}
    assert activity.count_toggles(vcd, top_scope="nothing") == {}
    print(f"count_toggles on a hand-written VCD: {len(want)} groups and 2 other top scopes "
          f"equal to the hand count ({want['_total']} toggles)")


class Child(wiring.Component):
    x: In(4)
    y: Out(4)

    def elaborate(self, platform):
        m = Module()
        self.r = r = Signal(4)
        m.d.sync += r.eq(self.x + 3)
        m.d.comb += self.y.eq(r ^ 5)
        return m


class Toy(wiring.Component):
    """A stand-in for the CFPU: stream-like ports, a register of its own, one submodule."""
    i__a: In(4)
    o__b: Out(4)

    def __init__(self):
        super().__init__()
        self.child = Child()
        self.st = Signal(4)

    def elaborate(self, platform):
        m = Module()
        m.submodules.unpack = self.child
        m.d.sync += self.st.eq(self.child.y)
        m.d.comb += [self.child.x.eq(self.i__a), self.o__b.eq(self.st)]
        return m


def test_amaranth_vcd(tmp_path):
    """A VCD the Amaranth simulator wrote for a small design, the way activity.py measures the
    CFPU (the design under "cfpu" in a sync-domain wrapper): per group, the toggles of the
    simulated values, read every cycle by the testbench."""
    dut = Toy()
    inputs = [3, 3, 7, 0, 15, 2, 9, 9, 6, 1]
    groups = {"interface": [dut.i__a, dut.o__b], "top": [dut.st],
              "unpack": [dut.child.x, dut.child.y]}
    samples = []

    async def testbench(ctx):
        def sample():
            samples.append({g: [ctx.get(s) for s in sigs] for g, sigs in groups.items()}
                           | {"r": [ctx.get(dut.child.r)]})
        for v in inputs:
            ctx.set(dut.i__a, v)
            sample()
            await ctx.tick()
        sample()

    sim = Simulator(with_sync_domain(dut, "cfpu"))
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    vcd = tmp_path / "toy.vcd"
    with sim.write_vcd(str(vcd)):
        sim.run()
    want = {}
    for before, after in zip(samples, samples[1:]):
        for g in list(groups) + ["r"]:
            n = sum(bin(x ^ y).count("1") for x, y in zip(before[g], after[g]))
            want[g] = want.get(g, 0) + n
    want["unpack"] += want.pop("r")      # the child's register, named only in the child
    want["_total"] = sum(want.values())
    assert all(want[g] > 0 for g in groups)
    assert activity.count_toggles(vcd) == want
    print(f"count_toggles on an Amaranth VCD ({len(inputs)} cycles): {want} equal to the "
          f"toggles of the simulated values")
