"""Scenarios of Scripts/bench, one module each (issue 19 starts the layout with `stall`).

Each module has `scenario(base, mode, threads, h)`, returning its results (a JSON-able
dict), and `report(mode, res)`, returning its BENCHMARKS.md section as lines. `h` is the
runner's helpers (daemon, fio, logging); a later split moves them into a shared module.
Python 3 standard library only.
"""
