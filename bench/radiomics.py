"""Radiomic feature extraction per lesion (contract §9.6, issue 20): 64³ and 256³ voxel ROIs, next to one evaluation.

What the worker's ``radiomics`` job runs per lesion segment: ``service.features.radiomics.extract_features`` — the bounded
child process (``python -m service.features.radiomics``: interpreter start, pyradiomics import, shape + first order + GLCM
3D averaged, fixed bin size 25) — on an ellipsoid ROI inscribed in an n³ box (semi-axes 0.45/0.40/0.35 n), CT-like
intensities (40 ± 20 HU, seeded), voxels 0.8 × 0.8 × 1.0 mm. Anchor, same run: one ``evaluate_patient`` of the
evaluation benchmark's patient (10 timepoints × 10 lesions).
"""

from __future__ import annotations

import resource
import time

import numpy as np

from bench.common import Section, Series, fmt, percentile

SIZES = (64, 256)


def roi(n: int) -> tuple[np.ndarray, np.ndarray]:
    z, y, x = np.mgrid[:n, :n, :n]
    c = (n - 1) / 2
    mask = ((z - c) / (0.45 * n)) ** 2 + ((y - c) / (0.40 * n)) ** 2 + ((x - c) / (0.35 * n)) ** 2 <= 1
    image = (40 + 20 * np.random.default_rng(0).standard_normal((n, n, n))).astype(np.float32)
    return image, mask.astype(np.uint8)


def run(ctx) -> Section:
    from bench.population import big_case
    from rules.evaluate import evaluate_patient
    from service.features.radiomics import RadiomicsSettings, extract_features, library_version

    settings = RadiomicsSettings(bin_width=25.0, max_voxels=20_000_000, time_limit_seconds=1800, memory_limit_mb=8192)
    section = Section("radiomics", "Radiomic features per lesion (64³ and 256³ voxel ROIs) next to one evaluation")
    section.setup += [
        f"pyradiomics-bhklab {library_version()} through `service.features.radiomics.extract_features` (the worker's path: "
        "bounded child process, its start and import included); shape + first order + GLCM (3D, averaged), fixed bin "
        "size 25 HU, native spacing 0.8 × 0.8 × 1.0 mm; ellipsoid ROI (semi-axes 0.45/0.40/0.35 n) in an n³ box, "
        "40 ± 20 HU noise.",
        "64³: 1 + repeats runs (first is warm-up, not counted); 256³: one run (minutes each). Anchor: "
        "`evaluate_patient` of the 10 × 10 patient, 20 calls after 5 warm-up, same process.",
    ]
    facts = big_case().facts("BENCH-10x10")
    for _ in range(5):
        evaluate_patient(facts)
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        evaluate_patient(facts)
        samples.append((time.perf_counter() - started) * 1000)
    evaluation_ms = percentile(samples, 50)
    rows = []
    for n in SIZES:
        image, mask = roi(n)
        runs = 1 if n > 64 else (1 + (2 if ctx.quick else ctx.repeats))
        times = []
        for index in range(runs):
            ctx.log(f"radiomics {n}^3 run {index + 1}/{runs}")
            started = time.perf_counter()
            result = extract_features(image, mask, (1.0, 0.8, 0.8), settings)
            times.append(time.perf_counter() - started)
        counted = times[1:] if len(times) > 1 else times
        series = section.add(Series(f"extraction {n}³", "s", counted, higher_is_better=False))
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rows.append(
            [
                f"{n}³",
                f"{int(mask.sum()):,}",
                str(len(result.features)),
                fmt(series.min, 2),
                fmt(series.median, 2),
                fmt(series.max, 2),
                f"{peak_mb:,.0f}",
                f"{series.median * 1000 / evaluation_ms:,.0f}×",
            ]
        )
    section.tables.append(
        (
            [
                "ROI box",
                "ROI voxels",
                "features",
                "s min",
                "s median",
                "s max",
                "peak child RSS MB (so far)",
                "× one evaluation",
            ],
            rows,
        )
    )
    section.notes.append(
        f"One evaluation (`evaluate_patient`, 10 × 10 patient) took {evaluation_ms:.1f} ms (p50 of 20) in the same run."
    )
    return section


if __name__ == "__main__":
    import sys

    from bench.run_all import Context

    started = time.monotonic()
    context = Context(quick=False, repeats=3)
    out = run(context)
    out.seconds = time.monotonic() - started
    for headers, table in out.tables:
        print("| " + " | ".join(headers) + " |")
        for row in table:
            print("| " + " | ".join(row) + " |")
    print(*out.notes, sep="\n")
    print(f"section took {out.seconds / 60:.1f} min", file=sys.stderr)
