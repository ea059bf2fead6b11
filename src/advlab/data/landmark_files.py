"""Readers of the published face-landmark annotation files (68-point iBUG layout).

- 300-W (Sagonas et al. 2013), one ``<image>.pts`` per image, text::

      version: 1
      n_points:  68
      {
      x y
      ...
      }

  in the image's pixel coordinates as annotated (Matlab convention: the centre of the top-left pixel is
  ``(1, 1)``); :func:`read_pts` returns them unchanged, :func:`pts_to_pixel_centres` converts them to advlab's
  convention (pixel ``i`` covers ``[i, i + 1)``, so subtract 0.5).
- 300W-LP (Zhu et al. 2016), Matlab ``.mat`` files (read with :func:`scipy.io.loadmat`): beside every image,
  ``<image>.mat`` with ``pt2d`` of shape ``[2, 68]`` (row 0 x, row 1 y) plus the 3DMM fit (``Pose_Para``,
  ``Shape_Para``, ``Exp_Para``, ...); and in ``landmarks/<subset>/<image>_pts.mat``, ``pts_2d`` and ``pts_3d`` of
  shape ``[68, 2]`` (the 2D-visible and the projected-3D contours). :func:`read_300wlp_mat` reads either
  (``which='2d'`` / ``'3d'`` picks ``pts_2d`` / ``pts_3d`` when both are there).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from advlab.errors import AdvlabError


def read_pts(path: str | os.PathLike) -> np.ndarray:
    """``[n_points, 2]`` float64 ``(x, y)`` of a 300-W ``.pts`` file, as written (1-based pixel centres)."""
    p = Path(path)
    lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
    header = {}
    body_start = None
    for i, ln in enumerate(lines):
        if ln == "{":
            body_start = i + 1
            break
        key, _, value = ln.partition(":")
        header[key.strip()] = value.strip()
    if body_start is None or "n_points" not in header or "}" not in lines[body_start:]:
        raise AdvlabError(f"'{p}' is not a 300-W .pts file (needs 'n_points: N' and a '{{ ... }}' block)")
    end = lines.index("}", body_start)
    pts = np.array([[float(v) for v in ln.split()] for ln in lines[body_start:end]], dtype=np.float64)
    n = int(header["n_points"])
    if pts.shape != (n, 2):
        raise AdvlabError(
            f"'{p}': n_points is {n} but the block holds {pts.shape[0]} rows of {pts.shape[1:]}"
        )
    return pts


def pts_to_pixel_centres(points: np.ndarray) -> np.ndarray:
    """300-W's 1-based pixel coordinates -> advlab's (centre of pixel ``i`` at ``i + 0.5``)."""
    return points - 0.5


def read_300wlp_mat(path: str | os.PathLike, which: str = "2d") -> np.ndarray:
    """``[68, 2]`` float64 ``(x, y)`` of a 300W-LP ``.mat``: ``pt2d`` ``[2, 68]`` (the image's file) or
    ``pts_2d`` / ``pts_3d`` ``[68, 2]`` (the ``landmarks/`` files)."""
    from scipy.io import loadmat

    if which not in ("2d", "3d"):
        raise AdvlabError(f"read_300wlp_mat: which must be '2d' or '3d' (got '{which}')")
    mat = loadmat(str(path))
    if "pt2d" in mat:
        pts = np.asarray(mat["pt2d"], dtype=np.float64)
        if pts.shape[0] != 2:
            raise AdvlabError(f"'{path}': pt2d has shape {pts.shape}, the published layout is [2, N]")
        return pts.T.copy()
    key = f"pts_{which}"
    if key in mat:
        pts = np.asarray(mat[key], dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise AdvlabError(f"'{path}': {key} has shape {pts.shape}, the published layout is [N, 2]")
        return pts
    found = sorted(k for k in mat if not k.startswith("__"))
    raise AdvlabError(f"'{path}' holds none of pt2d / pts_2d / pts_3d (found {found}); is it a 300W-LP file?")
