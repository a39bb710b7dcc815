"""The demonstration: ``immunorad demo``'s synthetic cohort sent through the real interfaces (FHIR Bundles, then
C-STORE), also the tests' patients; the DICOM it sends (CT and PET images, TID 1500 Measurement Reports, written as
a PACS would); and the loopback EHR stand-in of ``immunorad serve --demo``."""
