"""Radiomic features of one lesion segment at one timepoint, IBSI-identified (contract §9.6 "Features").

Library: **pyradiomics-bhklab 3.1.4** (the maintained build of pyradiomics; optional extra ``imaging``). Chosen
over mirp 2.7.0 on the IBSI 1 digital phantom and on speed (figures in the commit that added this module and in
``bench/RESULTS.md``): mirp reproduced every tested feature, pyradiomics all but the PCA minor and least axis
lengths (P9VJ 9.24 vs 9.31 ± 0.06 mm, 7J51 8.48 vs 8.54 ± 0.05 mm), while pyradiomics was ~14x faster on a 64³ ROI
and needs SimpleITK only, where mirp pulls ITK (1.5 GB installed). The two axis lengths are therefore *not*
emitted: :data:`FEATURES` lists only features whose value on the phantom lies within the IBSI reference manual's
published tolerance (``tests/service/test_radiomics.py``; the reference table is
``tests/fixtures/ibsi1_digital_phantom/reference_values.csv``, from the IBSI reference manual, Zwanenburg et al.,
arXiv:1612.07003, and Radiology 2020;295:328-338).

Settings (recorded in the Observation's ``method``, IBSI reporting guidelines): the image at its native spacing
(no resampling unless :attr:`RadiomicsSettings.resample_mm` is set; then B-spline interpolation of the image and
nearest-neighbour of the mask, the IBSI 1 configuration-C style), intensities discretised with a fixed bin size
(default 25 HU, bins anchored at multiples of the width as pyradiomics does), GLCM in 3D at distance 1 over the 13
directions, features averaged over directions ("3D, averaged"), first-order statistics on the non-discretised
intensities (entropy and uniformity on the discretised ones); excess kurtosis (pyradiomics reports kurtosis,
IBSI IPH6 is kurtosis - 3).

Bounds: an ROI above :attr:`RadiomicsSettings.max_voxels` is refused with that reason before any work; the
extraction runs in a child process (``python -m service.features.radiomics``) with an address-space limit
(``RLIMIT_AS``) and a wall-clock timeout, so a runaway library cannot take the worker down.
"""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LIBRARY = "pyradiomics-bhklab"
IBSI_SYSTEM = "https://theibsi.github.io/ibsi"


class RadiomicsError(Exception):
    """Features could not be computed; ``reason`` says why in words (kept with the segment, shown on the page)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RadiomicsUnavailable(RadiomicsError):
    """The optional ``imaging`` extra (pyradiomics-bhklab) is not installed."""


class RoiRefused(RadiomicsError):
    """The ROI is empty or larger than the configured bound."""


@dataclass(frozen=True)
class FeatureDef:
    ibsi_id: str
    name: str
    pyradiomics: str
    """pyradiomics feature key (``original_<class>_<name>``)."""
    unit: str | None
    """UCUM unit; ``"intensity"`` = the image's intensity unit; ``None`` dimensionless."""
    scale: float = 1.0
    offset: float = 0.0


# IBSI identifiers and names: IBSI reference manual (arXiv:1612.07003) chapter "Image features".
FEATURES: tuple[FeatureDef, ...] = (
    # Morphology (IBSI §3.1); the mesh and voxel volumes in cm3 (contract §9.6), lengths in mm.
    FeatureDef("RNU0", "Volume (mesh)", "original_shape_MeshVolume", "cm3", scale=1e-3),
    FeatureDef("YEKZ", "Volume (voxel counting)", "original_shape_VoxelVolume", "cm3", scale=1e-3),
    FeatureDef("C0JK", "Surface area (mesh)", "original_shape_SurfaceArea", "mm2"),
    FeatureDef("2PR5", "Surface to volume ratio", "original_shape_SurfaceVolumeRatio", "/mm"),
    FeatureDef("QCFX", "Sphericity", "original_shape_Sphericity", None),
    FeatureDef("L0JK", "Maximum 3D diameter", "original_shape_Maximum3DDiameter", "mm"),
    FeatureDef("TDIC", "Major axis length", "original_shape_MajorAxisLength", "mm"),
    FeatureDef("Q3CK", "Elongation", "original_shape_Elongation", None),
    FeatureDef("N17B", "Flatness", "original_shape_Flatness", None),
    # Intensity-based statistics (IBSI §3.3), on the non-discretised intensities.
    FeatureDef("Q4LE", "Mean intensity", "original_firstorder_Mean", "intensity"),
    FeatureDef("ECT3", "Intensity variance", "original_firstorder_Variance", None),
    FeatureDef("KE2A", "Intensity skewness", "original_firstorder_Skewness", None),
    FeatureDef("IPH6", "(Excess) intensity kurtosis", "original_firstorder_Kurtosis", None, offset=-3.0),
    FeatureDef("Y12H", "Median intensity", "original_firstorder_Median", "intensity"),
    FeatureDef("1GSF", "Minimum intensity", "original_firstorder_Minimum", "intensity"),
    FeatureDef("QG58", "10th intensity percentile", "original_firstorder_10Percentile", "intensity"),
    FeatureDef("8DWT", "90th intensity percentile", "original_firstorder_90Percentile", "intensity"),
    FeatureDef("84IY", "Maximum intensity", "original_firstorder_Maximum", "intensity"),
    FeatureDef("SALO", "Intensity interquartile range", "original_firstorder_InterquartileRange", "intensity"),
    FeatureDef("2OJQ", "Intensity range", "original_firstorder_Range", "intensity"),
    FeatureDef(
        "4FUA", "Intensity-based mean absolute deviation", "original_firstorder_MeanAbsoluteDeviation", "intensity"
    ),
    FeatureDef(
        "1128",
        "Intensity-based robust mean absolute deviation",
        "original_firstorder_RobustMeanAbsoluteDeviation",
        "intensity",
    ),
    FeatureDef("N8CA", "Intensity-based energy", "original_firstorder_Energy", None),
    FeatureDef("5ZWQ", "Root mean square intensity", "original_firstorder_RootMeanSquared", "intensity"),
    # Intensity histogram (IBSI §3.4), on the discretised intensities.
    FeatureDef("TLU2", "Discretised intensity entropy", "original_firstorder_Entropy", None),
    FeatureDef("BJ5W", "Discretised intensity uniformity", "original_firstorder_Uniformity", None),
    # Grey level co-occurrence matrix (IBSI §3.6), 3D, distance 1, averaged over the 13 directions.
    FeatureDef("GYBY", "Joint maximum", "original_glcm_MaximumProbability", None),
    FeatureDef("60VM", "Joint average", "original_glcm_JointAverage", None),
    FeatureDef("UR99", "Joint variance", "original_glcm_SumSquares", None),
    FeatureDef("TU9B", "Joint entropy", "original_glcm_JointEntropy", None),
    FeatureDef("TF7R", "Difference average", "original_glcm_DifferenceAverage", None),
    FeatureDef("D3YU", "Difference variance", "original_glcm_DifferenceVariance", None),
    FeatureDef("NTRS", "Difference entropy", "original_glcm_DifferenceEntropy", None),
    FeatureDef("ZGXS", "Sum average", "original_glcm_SumAverage", None),
    FeatureDef("P6QZ", "Sum entropy", "original_glcm_SumEntropy", None),
    FeatureDef("8ZQL", "Angular second moment", "original_glcm_JointEnergy", None),
    FeatureDef("ACUI", "Contrast", "original_glcm_Contrast", None),
    FeatureDef("IB1Z", "Inverse difference", "original_glcm_Id", None),
    FeatureDef("NDRX", "Normalised inverse difference", "original_glcm_Idn", None),
    FeatureDef("WF0Z", "Inverse difference moment", "original_glcm_Idm", None),
    FeatureDef("1QCO", "Normalised inverse difference moment", "original_glcm_Idmn", None),
    FeatureDef("E8JP", "Inverse variance", "original_glcm_InverseVariance", None),
    FeatureDef("NI2N", "Correlation", "original_glcm_Correlation", None),
    FeatureDef("QWB0", "Autocorrelation", "original_glcm_Autocorrelation", None),
    FeatureDef("DG8W", "Cluster tendency", "original_glcm_ClusterTendency", None),
    FeatureDef("7NFM", "Cluster shade", "original_glcm_ClusterShade", None),
    FeatureDef("AE86", "Cluster prominence", "original_glcm_ClusterProminence", None),
    FeatureDef("R8DG", "Information correlation 1", "original_glcm_Imc1", None),
    FeatureDef("JN9H", "Information correlation 2", "original_glcm_Imc2", None),
)


@dataclass(frozen=True)
class RadiomicsSettings:
    bin_width: float = 25.0
    """Fixed bin size in intensity units (IBSI FBS; 25 HU for CT)."""
    resample_mm: tuple[float, float, float] | None = None
    """Isotropic or anisotropic (z, y, x) target spacing; ``None`` keeps the native spacing."""
    max_voxels: int = 8_000_000
    """ROIs with more voxels in the mask are refused (a 256³ bounding box holds ~4.4 M ellipsoid voxels)."""
    time_limit_seconds: float = 600.0
    memory_limit_mb: int = 4096

    def describe(self) -> str:
        resampling = (
            "no resampling (native spacing)"
            if self.resample_mm is None
            else "resampled to {}x{}x{} mm (z,y,x), B-spline image / nearest-neighbour mask".format(*self.resample_mm)
        )
        return (
            f"{resampling}; fixed bin size {self.bin_width:g} (IBSI FBS, bins anchored at multiples of the width); "
            "first-order on raw intensities, entropy/uniformity discretised; GLCM 3D, distance 1, 13 directions, "
            "averaged (IBSI '3D, averaged')"
        )


@dataclass(frozen=True)
class FeatureValue:
    ibsi_id: str
    name: str
    value: float
    unit: str | None


@dataclass(frozen=True)
class FeatureSet:
    features: tuple[FeatureValue, ...]
    library: str
    library_version: str
    settings: RadiomicsSettings

    @property
    def method(self) -> str:
        return f"{self.library} {self.library_version} (IBSI 1 compliant subset): {self.settings.describe()}"

    def by_id(self) -> dict[str, FeatureValue]:
        return {f.ibsi_id: f for f in self.features}


def library_version() -> str:
    try:
        import radiomics
    except ImportError as exc:
        raise RadiomicsUnavailable(
            "radiomic features need the optional 'imaging' extra (pip install 'immunorad[imaging]': pyradiomics-bhklab)"
        ) from exc
    return str(radiomics.__version__).lstrip("v")


def _extract_in_process(
    image: np.ndarray, mask: np.ndarray, spacing_zyx: tuple[float, float, float], settings: RadiomicsSettings
) -> dict[str, float]:
    """The library call itself (runs in the child process)."""
    import logging

    import SimpleITK
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    params: dict[str, Any] = {"binWidth": settings.bin_width, "label": 1, "additionalInfo": False, "force2D": False}
    if settings.resample_mm is not None:
        params.update(resampledPixelSpacing=list(settings.resample_mm[::-1]), interpolator="sitkBSpline")
    extractor = featureextractor.RadiomicsFeatureExtractor(**params)
    extractor.disableAllFeatures()
    for cls in ("shape", "firstorder", "glcm"):
        extractor.enableFeatureClassByName(cls)

    def to_image(array: np.ndarray) -> Any:
        img = SimpleITK.GetImageFromArray(array)
        img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
        return img

    raw = extractor.execute(to_image(image.astype(np.float64)), to_image(mask.astype(np.uint8)))
    return {d.pyradiomics: float(raw[d.pyradiomics]) for d in FEATURES}


def _features_from(raw: Mapping[str, float], intensity_unit: str | None) -> tuple[FeatureValue, ...]:
    out = []
    for d in FEATURES:
        unit = intensity_unit if d.unit == "intensity" else d.unit
        out.append(FeatureValue(d.ibsi_id, d.name, raw[d.pyradiomics] * d.scale + d.offset, unit))
    return tuple(out)


def _limit_memory(limit_mb: int) -> None:
    limit = limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


_OUT_OF_MEMORY = ("MemoryError", "bad_alloc", "Memory allocation", "Cannot allocate memory")


def _child_environment() -> dict[str, str]:
    """This checkout first on the child's path, so the child runs the same code as its parent."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def extract_features(
    image: np.ndarray,
    mask: np.ndarray,
    spacing_zyx: tuple[float, float, float],
    settings: RadiomicsSettings = RadiomicsSettings(),
    *,
    intensity_unit: str | None = None,
) -> FeatureSet:
    """IBSI features of ``mask`` (non-zero = ROI) over ``image`` (z, y, x arrays; spacing in mm), bounded.

    Raises :class:`RoiRefused` (empty or too large ROI), :class:`RadiomicsUnavailable` (extra not installed) or
    :class:`RadiomicsError` (the child failed, ran out of memory or time) with the reason in words.
    """
    if image.shape != mask.shape or image.ndim != 3:
        raise RoiRefused(f"image {image.shape} and mask {mask.shape} must be 3D arrays of the same shape")
    voxels = int(np.count_nonzero(mask))
    if voxels == 0:
        raise RoiRefused("the segment is empty")
    if voxels > settings.max_voxels:
        raise RoiRefused(f"the segment has {voxels} voxels, more than the configured bound of {settings.max_voxels}")
    version = library_version()
    buffer = io.BytesIO()
    np.savez(
        buffer,
        image=image,
        mask=(mask != 0).astype(np.uint8),
        spacing=np.asarray(spacing_zyx, dtype=np.float64),
        settings=np.asarray(
            json.dumps(
                {
                    "bin_width": settings.bin_width,
                    "resample_mm": settings.resample_mm,
                    "max_voxels": settings.max_voxels,
                    "time_limit_seconds": settings.time_limit_seconds,
                    "memory_limit_mb": settings.memory_limit_mb,
                }
            )
        ),
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "service.features.radiomics"],
            input=buffer.getvalue(),
            capture_output=True,
            timeout=settings.time_limit_seconds,
            preexec_fn=lambda: _limit_memory(settings.memory_limit_mb),
            env=_child_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RadiomicsError(
            f"feature extraction exceeded the time bound of {settings.time_limit_seconds:g} s"
        ) from exc
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
        if any(sign in tail[0] for sign in _OUT_OF_MEMORY):
            raise RadiomicsError(f"feature extraction exceeded the memory bound of {settings.memory_limit_mb} MB")
        raise RadiomicsError(f"feature extraction failed: {tail[0][:200]}")
    raw = json.loads(done.stdout)
    return FeatureSet(_features_from(raw, intensity_unit), LIBRARY, version, settings)


def _child() -> int:
    data = np.load(io.BytesIO(sys.stdin.buffer.read()))
    options = json.loads(str(data["settings"]))
    options["resample_mm"] = tuple(options["resample_mm"]) if options["resample_mm"] else None
    settings = RadiomicsSettings(**options)
    spacing = tuple(float(s) for s in data["spacing"])
    raw = _extract_in_process(data["image"], data["mask"], (spacing[0], spacing[1], spacing[2]), settings)
    sys.stdout.write(json.dumps(raw))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
