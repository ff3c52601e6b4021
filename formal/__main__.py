"""``python -m canna.formal [--long] [--only NAME] [--solver NAME] [--mutant NAME]``: run the proofs (the fast
set, or all with ``--long``), print what each proved and its run time, and on a failure the
counterexample (waveform and ``canna mul`` vector line, both under ``build/formal/``).
Exit status 0 when every proof passed, 1 when one failed, 2 on bad usage or a missing tool."""
from __future__ import annotations

import sys

from canna.cli import CliError, OneLineErrorParser, run_command
from canna.sim.paths import build_root

from .mutants import MUTANTS
from .proofs import SOLVER, SOLVERS, ToolMissing, all_proofs, per_config_hit_proofs, run_proof


def report(result, solver: str = SOLVER) -> str:
    p = result.proof
    if result.passed:
        return f"PASS  {p.name:24s} {result.seconds:6.1f} s  {p.claim} (BMC depth {p.depth}, {solver})"
    c = result.counterexample
    rtl, ref = c["rtl"], c["golden"]
    lines = [f"FAIL  {p.name:24s} {result.seconds:6.1f} s  {p.claim}",
             f"      counterexample: a={c['a']:08X} b={c['b']:08X} config {c['config_text']}",
             f"      RTL    bits {rtl[0]:08X} flags {rtl[1]:02X} hit {int(rtl[2])}",
             f"      golden bits {ref[0]:08X} flags {ref[1]:02X} hit {int(ref[2])}"
             + ("" if c["mismatch"] else "  (the same: the failure is in the timing, see the waveform)"),
             f"      vector line: {c['line']}   replay: {c['command']}",
             f"      waveform: {c['vcd']}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = OneLineErrorParser(prog="python -m canna.formal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="every proof, not only the fast set")
    parser.add_argument("--only", metavar="NAME", help="run the proofs whose name contains NAME")
    parser.add_argument("--per-config", action="store_true",
                        help="the hit-rule proof once per configuration (47 proofs; a measurement)")
    parser.add_argument("--solver", choices=sorted(SOLVERS), default=SOLVER,
                        help=f"the SMT solver smtbmc drives (default {SOLVER})")
    parser.add_argument("--mutant", choices=sorted(MUTANTS),
                        help="prove a deliberately broken decision rule (expected to fail)")
    args = parser.parse_args(argv)

    def run():
        pool = per_config_hit_proofs() if args.per_config else all_proofs(args.long or bool(args.only))
        proofs = [p for p in pool if not args.only or args.only in p.name]
        if not proofs:
            raise CliError(f"--only {args.only}: no proof has that in its name")
        out = build_root() / "formal"
        failed = 0
        total = 0.0
        for proof in proofs:
            try:
                result = run_proof(proof, out, mutant=args.mutant, solver=args.solver)
            except ToolMissing as e:
                raise CliError(str(e)) from None
            total += result.seconds
            failed += not result.passed
            print(report(result, args.solver), flush=True)
        print(f"{len(proofs) - failed} of {len(proofs)} proofs passed in {total:.1f} s "
              f"(SymbiYosys smtbmc + {args.solver}; work in {out})")
        return 1 if failed else 0

    return run_command("python -m canna.formal", run)


if __name__ == "__main__":
    sys.exit(main())
