"""Landmark data: the 300-W ``.pts`` and 300W-LP ``.mat`` readers on fixtures in the published layouts, and the
embedded ``synthfaces_landmarks`` annotations (they follow the drawing and its attribute edits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advlab.data.base import DATASETS
from advlab.data.landmark_files import pts_to_pixel_centres, read_300wlp_mat, read_pts
from advlab.data.synthfaces import ATTRIBUTES
from advlab.errors import AdvlabError
from advlab.registry import parse_config

POINTS = np.stack([np.arange(68) * 1.5 + 10.25, np.arange(68)[::-1] * 2.0 + 3.0], axis=1)


def test_read_pts_300w_layout(tmp_path):
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in POINTS)
    path = tmp_path / "indoor_001.pts"
    path.write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    pts = read_pts(path)
    assert pts.shape == (68, 2) and np.allclose(pts, POINTS, atol=1e-3)
    assert np.allclose(pts_to_pixel_centres(pts), POINTS - 0.5, atol=1e-3)
    bad = tmp_path / "bad.pts"
    bad.write_text(f"version: 1\nn_points:  67\n{{\n{body}\n}}\n")
    with pytest.raises(AdvlabError, match="n_points is 67"):
        read_pts(bad)


def test_read_300wlp_mat_layouts(tmp_path):
    from scipy.io import savemat

    # the image's .mat: pt2d [2, 68] beside the 3DMM fit
    savemat(tmp_path / "AFW_134212_1_0.mat", {"pt2d": POINTS.T, "Pose_Para": np.zeros((1, 7)),
                                              "Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1))})  # fmt: skip
    assert np.allclose(read_300wlp_mat(tmp_path / "AFW_134212_1_0.mat"), POINTS)
    # landmarks/AFW/<image>_pts.mat: pts_2d and pts_3d [68, 2]
    savemat(tmp_path / "AFW_134212_1_0_pts.mat", {"pts_2d": POINTS, "pts_3d": POINTS + 1})
    assert np.allclose(read_300wlp_mat(tmp_path / "AFW_134212_1_0_pts.mat"), POINTS)
    assert np.allclose(read_300wlp_mat(tmp_path / "AFW_134212_1_0_pts.mat", which="3d"), POINTS + 1)
    savemat(tmp_path / "other.mat", {"roi": np.zeros((1, 4))})
    with pytest.raises(AdvlabError, match="none of pt2d"):
        read_300wlp_mat(tmp_path / "other.mat")


def synth(**kw):
    cls = DATASETS.get("synthfaces_landmarks")
    params = {"name": "synthfaces_landmarks", "train_identities": 4, "dev_identities": 2, "test_identities": 2,
              "images_per_identity": 4, **kw}  # fmt: skip
    return cls(parse_config(cls.Config, params, "dataset"), 0)


def test_synthfaces_landmarks_follow_the_drawing_and_its_edits():
    data = synth(size=48)
    lm = data.landmarks("train")
    assert lm.shape == (16, 68, 2) and bool(((lm > 0) & (lm < 48)).all())
    x, y = data.dataset("train")[3]
    assert x.shape == (3, 48, 48) and torch.equal(y, lm[3])
    # the iris is drawn at the eye centre: the pixel under the mean of the eye's six points has the iris colour
    params = data._tensors()["train"]["params"]
    img = data.load_images("train", torch.arange(16))
    for side, pts in ((0, range(36, 42)), (1, range(42, 48))):
        c = lm[:, list(pts)].mean(dim=1).floor().long()
        px = img[torch.arange(16), :, c[:, 1], c[:, 0]]
        colour = params["iris"] * params["light"].view(16, 1)
        assert float((px - colour).abs().max()) < 0.12, side
    # Chubby widens the jaw by its 1.2 factor, Smiling lowers the lower lip's centre
    attrs = data.attributes("train")
    idx = torch.arange(16)
    plain = attrs.clone()
    plain[:, ATTRIBUTES.index("Chubby")] = 0
    plain[:, ATTRIBUTES.index("Smiling")] = 0
    chubby, smiling = plain.clone(), plain.clone()
    chubby[:, ATTRIBUTES.index("Chubby")] = 1
    smiling[:, ATTRIBUTES.index("Smiling")] = 1
    w0 = data.landmarks_of_edit("train", idx, plain)
    w1 = data.landmarks_of_edit("train", idx, chubby)
    assert torch.allclose(w1[:, 16, 0] - w1[:, 0, 0], 1.2 * (w0[:, 16, 0] - w0[:, 0, 0]), atol=1e-4)
    s1 = data.landmarks_of_edit("train", idx, smiling)
    assert bool((s1[:, 57, 1] > w0[:, 57, 1] + 1.0).all())
    assert torch.equal(s1[:, :48], w0[:, :48])  # the smile moves the mouth only
