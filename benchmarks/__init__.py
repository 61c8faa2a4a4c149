"""On-demand quality and speed benchmarks (``python -m benchmarks.quality`` / ``python -m benchmarks.speed``).

Not part of the installed package and not run by CI, except a few-second smoke mode of each script
(``tests/core/test_benchmarks_smoke.py``). Results land in ``benchmarks/results/``.
"""
