"""The running service: the adapters (``fhir_mappings``, ``dicom_listener``) and the pure core (``rules``) wired
into roles, one sub-package (room) per concern: ``api``, ``ingest``, ``assessment``, ``publish``, ``features``,
``dashboard``, ``security``, ``persistence`` (schema in ``migrations``), ``ops``, ``demo``; ``cli`` starts the
roles. docs/ARCHITECTURE.md has the module map."""
