"""The demonstration: ``immunorad demo``'s synthetic cohort sent through the real interfaces (FHIR Bundles, then
C-STORE), also the tests' patients, and the loopback EHR stand-in of ``immunorad serve --demo``."""
