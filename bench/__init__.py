"""Benchmark harness for aarm-pdp (``make bench``, ``make bench-quick``)."""
