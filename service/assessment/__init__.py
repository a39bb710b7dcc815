"""Assessing patients: their stored inputs read as ``rules`` facts, evaluation and publication of the results
(assessment version, reports, alerts, outbox) in one transaction, ``immunorad reassess``, the radiologist's
sign-off of a timepoint's category, and the worker role that runs the queued jobs and delivers the outbox."""
