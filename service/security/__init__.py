"""The trust boundary of the HTTP side: who may call the API and with what scope (API token, JWT access tokens, CDS
Hooks JWTs), the audit trail served as FHIR AuditEvent and Provenance, and the bounded reads from an EHR's
``fhirServer`` during a CDS Hooks call (only the verified issuer's configured base, off the request threads)."""
