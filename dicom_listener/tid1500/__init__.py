"""TID 1500 Measurement Reports: the coded vocabulary (``codes``), the reader (``reader``: content tree →
``model.ParsedReport``), the producers' quirks it absorbs (``quirks``) and units / pixel geometry (``geometry``),
and what leaves the adapter (``facts``: each group as the core's fact plus provenance)."""
