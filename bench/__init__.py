"""Benchmarks, evaluation and the synthetic videos they share with the tests."""
