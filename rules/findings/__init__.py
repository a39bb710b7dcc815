"""Findings and alerts the rule base raises from criteria, kinetics and patterns (contract §5 Flag codes)."""
