"""Common-corruption metrics (Hendrycks & Dietterich 2019) as reported by Laidlaw et al. 2021.

For a model ``f`` and a baseline ``b`` (AlexNet in the original benchmark; any model in advlab), with
``E_{s,c}`` the top-1 error under corruption ``c`` at severity ``s`` and ``E_clean`` the clean error:

* ``CE_c = sum_s E^f_{s,c} / sum_s E^b_{s,c}``, ``mCE = mean_c CE_c``;
* relative: ``rCE_c = sum_s (E^f_{s,c} - E^f_clean) / sum_s (E^b_{s,c} - E^b_clean)``,
  ``relative mCE = mean_c rCE_c`` (the paper's headline number; the authors' script stops before averaging
  and has no relative mCE).

Errors are given per corruption as a sequence over the same severities for model and baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)


def _check(errors: Mapping[str, Sequence[float]], baseline: Mapping[str, Sequence[float]]) -> None:
    missing = sorted(set(errors) - set(baseline))
    if missing:
        raise ValueError(f"baseline has no errors for corruption(s) {missing}")
    for c, errs in errors.items():
        if len(errs) != len(baseline[c]):
            raise ValueError(
                f"corruption '{c}': {len(errs)} severities for the model but {len(baseline[c])} for the baseline"
            )


def corruption_errors(errors: Mapping[str, Sequence[float]], baseline: Mapping[str, Sequence[float]]):
    """``{c: CE_c}``."""
    _check(errors, baseline)
    out = {}
    for c, errs in errors.items():
        denom = sum(baseline[c])
        out[c] = sum(errs) / denom if denom > 0 else float("nan")
    return out


def mce(errors: Mapping[str, Sequence[float]], baseline: Mapping[str, Sequence[float]]) -> float:
    ce = corruption_errors(errors, baseline)
    return sum(ce.values()) / len(ce)


def relative_corruption_errors(
    errors: Mapping[str, Sequence[float]],
    clean_error: float,
    baseline: Mapping[str, Sequence[float]],
    baseline_clean_error: float,
) -> dict[str, float]:
    """``{c: rCE_c}``."""
    _check(errors, baseline)
    out = {}
    for c, errs in errors.items():
        denom = sum(e - baseline_clean_error for e in baseline[c])
        num = sum(e - clean_error for e in errs)
        out[c] = num / denom if denom != 0 else float("nan")
    return out


def relative_mce(
    errors: Mapping[str, Sequence[float]],
    clean_error: float,
    baseline: Mapping[str, Sequence[float]],
    baseline_clean_error: float,
) -> float:
    rce = relative_corruption_errors(errors, clean_error, baseline, baseline_clean_error)
    return sum(rce.values()) / len(rce)
