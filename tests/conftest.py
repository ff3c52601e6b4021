"""Every regression prints how many vectors it checked. pytest hides what a passing test
prints, so this hook collects it and lists it at the end of the run, in a section of its own
("what the tests checked"), one line per printed line after the test's name."""
from __future__ import annotations

_printed: list[tuple[str, list[str]]] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed and report.capstdout.strip():
        _printed.append((report.nodeid, report.capstdout.strip().splitlines()))


def pytest_terminal_summary(terminalreporter):
    if not _printed:
        return
    terminalreporter.section("what the tests checked")
    for nodeid, lines in _printed:
        for line in lines:
            terminalreporter.write_line(f"{nodeid}: {line}")
