"""Getting results to the EHR and following them there: the HTTP client of the EHR's FHIR base (delivery of the
outbox's transaction Bundles, searches), SMART Backend Services access tokens, and the follow-up of delivered
alerts (acknowledged by API, CDS Hooks feedback or a Flag set inactive in the EHR)."""
