"""What comes in, stored: DICOM instances from the C-STORE listener (headers, TID 1500 SRs and the AI results they
carry, images, SEG), FHIR writes and Bundles (validated, then kept as resources and domain rows), the clinical
context pulled from the EHR, and DICOM SEG measured by the worker (pixel retention, lesion volumes, body
composition). Each stores in the caller's transaction and queues the evaluation it triggers."""
