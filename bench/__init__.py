"""Benchmarks; each prints its figures with a JSON object on the last line."""
