"""The quality dashboard's arithmetic (contract §7, §9.7): the cohort's assessments and deliveries, engine versus
radiologist concordance, cohort end points (ORR, DCR, PFS/iPFS), the CDISC SDTM export and the server-rendered SVG
plots. Pure functions over what ``quality.load_cohort`` reads; the pages and the JSON are in ``service.api``."""
