"""Benchmarks of .sinr against the formats users have (python -m benchmarks run)."""
