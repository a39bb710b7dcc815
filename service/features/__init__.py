"""Imaging features and signatures (contract §9.6): IBSI radiomic features of a lesion segment (optional
``imaging`` extra), the worker job that computes them, the signature model cards (YAML, shipped in
``signatures/`` plus a site's own) and the patient's signature Observations as rows for the pages."""
