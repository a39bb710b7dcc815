"""Benchmarks of issue 8 §4: ``python -m bench.run_all`` runs them all and writes bench/RESULTS.md."""
