"""The benchmark harness: every figure a ratio measured in one run; ``python -m benchmarks.run``."""
