"""The pure domain core of immunorad: facts, arithmetic, decision tables and criteria.

Nothing in this package does I/O or imports Flask, SQLAlchemy or pynetdicom (style.md).
"""

__version__ = "0.1.0"
