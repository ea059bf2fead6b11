"""The landmark task: decoding as the face-alignment package, NME / r_out equal hand-computed values, the
Rotating Eyes / Out of Region targets, and the Houdini objective (its definition and non-zero gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from advlab.data.info import DataInfo
from advlab.registry import parse_config
from advlab.tasks.landmarks import (
    EYES,
    Landmarks,
    centred_box,
    decode_landmarks,
    gaussian_heatmaps,
    heatmap_peaks,
    nme,
    out_of_region_targets,
    r_out,
    rotate_points,
)

INFO = DataInfo(68, (3, 32, 32), [str(i) for i in range(68)], (0.0,) * 3, (1.0,) * 3)


def task(**kw) -> Landmarks:
    return Landmarks(parse_config(Landmarks.Config, {"name": "landmarks", **kw}, "task"), INFO)


def test_heatmap_peak_quarter_pixel_shift_towards_larger_neighbour():
    hm = torch.zeros(1, 3, 8, 8)
    hm[0, 0, 3, 5] = 1.0  # peak at x=5, y=3; right and upper neighbours larger than left and lower
    hm[0, 0, 3, 6], hm[0, 0, 3, 4] = 0.6, 0.2
    hm[0, 0, 2, 5], hm[0, 0, 4, 5] = 0.7, 0.1
    hm[0, 1, 0, 2] = 1.0  # on the border row: no refinement
    hm[0, 1, 0, 3] = 0.5
    hm[0, 2, 4, 4] = 1.0  # equal neighbours: no shift
    p = heatmap_peaks(hm)
    assert p[0, 0].tolist() == [5.5 + 0.25, 3.5 - 0.25]
    assert p[0, 1].tolist() == [2.5, 0.5]
    assert p[0, 2].tolist() == [4.5, 4.5]
    # heatmap pixels -> image pixels: a 16x16 heatmap of a 64x64 image is a factor 4
    hm16 = torch.zeros(1, 1, 16, 16)
    hm16[0, 0, 10, 2] = 1.0
    assert decode_landmarks(hm16, (64, 64))[0, 0].tolist() == [2.5 * 4, 10.5 * 4]


def test_gaussian_heatmaps_at_pixel_centres_decode_exactly():
    pts = torch.tensor([[[4.0 * 2.5, 4.0 * 7.5], [4.0 * 12.5, 4.0 * 1.5]]])  # heatmap pixel centres (x4)
    hm = gaussian_heatmaps(pts, (16, 16), (64, 64), sigma=1.0)
    assert hm.shape == (1, 2, 16, 16) and float(hm.max()) == pytest.approx(1.0)
    assert torch.equal(decode_landmarks(hm, (64, 64)), pts)


def test_nme_equals_hand_computed_value():
    gt = torch.tensor([[[0.0, 0.0], [4.0, 0.0], [0.0, 9.0]]])  # box 4 x 9: sqrt(area) = 6
    pred = torch.tensor([[[3.0, 4.0], [4.0, 0.0], [0.0, 10.0]]])  # errors 5, 0, 1 -> mean 2
    assert float(nme(pred, gt, gt)) == pytest.approx(2 / 6)
    assert float(nme(pred, gt, gt, points=[0])) == pytest.approx(5 / 6)
    # the box comes from `box_from`, not from the reference
    ref = torch.zeros(1, 3, 2)
    assert float(nme(pred * 0, ref, gt)) == pytest.approx(0.0)


def test_r_out_equals_hand_computed_value():
    box = centred_box((10, 10), 0.5)
    assert box == (2.5, 2.5, 7.5, 7.5)
    pts = torch.tensor([[[5.0, 5.0], [1.0, 5.0], [7.5, 7.5], [8.0, 3.0]]])  # in, out, on the edge (in), out
    assert float(r_out(pts, box)) == pytest.approx(0.5)
    wide = centred_box((10, 20), 0.5)  # H=10, W=20: the box follows each side
    assert wide == (5.0, 2.5, 15.0, 7.5)


def test_rotating_eyes_target_is_a_90_degree_counter_clockwise_rotation_about_the_eyes_centre():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(3, 68, 2, generator=g) * 32
    t = task(goal="rotating_eyes").make_targets(y)
    others = [i for i in range(68) if i not in EYES]
    assert torch.equal(t[:, others], y[:, others])
    c = y[:, EYES].mean(dim=1, keepdim=True)
    d, e = y[:, EYES] - c, t[:, EYES] - c
    assert torch.allclose(t[:, EYES].mean(dim=1, keepdim=True), c, atol=1e-5)  # same centre
    assert torch.allclose(d.norm(dim=-1), e.norm(dim=-1), atol=1e-4)  # distances kept
    assert torch.allclose((d * e).sum(-1), torch.zeros(3, 12), atol=1e-4)  # perpendicular
    # counter-clockwise on screen with y pointing down: (dx, dy) -> (dy, -dx); right of centre -> above it
    assert torch.allclose(e, torch.stack([d[..., 1], -d[..., 0]], dim=-1), atol=1e-4)
    single = rotate_points(torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]]), [0, 1], 90.0)
    assert torch.allclose(single, torch.tensor([[[0.0, -1.0], [0.0, 1.0]]]), atol=1e-6)


def test_out_of_region_targets_leave_the_box_along_the_ray_from_its_centre():
    box = centred_box((32, 32), 0.5)  # (8, 8, 24, 24), centre (16, 16)
    y = torch.tensor([[[16.0, 16.0], [20.0, 18.0], [10.0, 23.0], [2.0, 2.0], [30.0, 16.0]]])
    t = out_of_region_targets(y, box, margin=1.0)
    assert bool((r_out(t, box) == 1.0).all())
    assert torch.equal(t[0, 3:], y[0, 3:])  # already outside: unchanged
    centre = torch.tensor([16.0, 16.0])
    for k in (1, 2):
        d, e = y[0, k] - centre, t[0, k] - centre
        assert abs(float(d[0] * e[1] - d[1] * e[0])) < 1e-4 and float(e.norm()) > float(d.norm())
    assert torch.allclose(
        t[0, 1], centre + torch.tensor([8.0, 4.0]) + torch.tensor([2.0, 1.0]) / math.sqrt(5)
    )
    assert task(goal="out_of_region").make_targets(y).shape == y.shape


def test_houdini_objective_equals_its_definition_and_has_gradients():
    t = task(goal="rotating_eyes", objective="houdini")
    g = torch.Generator().manual_seed(1)
    hm = torch.rand(2, 68, 16, 16, generator=g).requires_grad_(True)
    pred = t.predict(hm.detach())
    # targets at heatmap pixel centres, so the bilinear score is that pixel's value
    idx = torch.randint(1, 15, (2, 68, 2), generator=g)
    target = (idx.float() + 0.5) * 2.0
    y = torch.rand(2, 68, 2, generator=g) * 32
    value = t.objective(hm, y, target)
    norm = ((y.amax(1) - y.amin(1)).prod(-1)).sqrt()
    b = torch.arange(2)[:, None]
    k = torch.arange(68)[None, :]
    s_t = hm.detach()[b, k, idx[..., 1], idx[..., 0]]
    # the score of the prediction: the heatmap at the refined peak, bilinear between the peak pixel and the
    # neighbours it was shifted towards (weights 0.75 / 0.25 on each shifted axis)
    cell = pred / 2.0 - 0.5  # continuous heatmap index
    lo = cell.floor().long()
    w = cell - lo
    h0 = hm.detach()

    def at(dx, dy):
        return h0[b, k, (lo[..., 1] + dy).clamp(0, 15), (lo[..., 0] + dx).clamp(0, 15)]

    s_p = (
        (1 - w[..., 0]) * (1 - w[..., 1]) * at(0, 0)
        + w[..., 0] * (1 - w[..., 1]) * at(1, 0)
        + (1 - w[..., 0]) * w[..., 1] * at(0, 1)
        + w[..., 0] * w[..., 1] * at(1, 1)
    )
    loss = (pred - target).norm(dim=-1) / norm[:, None]
    expected = (0.5 * torch.erfc((s_t - s_p) / math.sqrt(2)) * loss)[:, EYES].sum(dim=1)
    assert torch.allclose(value, expected, atol=1e-6)
    value.sum().backward()
    assert hm.grad is not None and float(hm.grad[:, EYES].abs().sum()) > 0
    assert float(hm.grad[:, :36].abs().sum()) == 0.0  # only the eyes are targeted


def test_margin_is_negative_exactly_when_the_goal_is_met():
    t = task(goal="rotating_eyes", success_nme=0.05)
    y = torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(2)) * 20 + 6
    target = t.make_targets(y)
    hm = gaussian_heatmaps(torch.cat([target[:1], y[1:]]), (16, 16), (32, 32), 1.0)
    ok = t.success(hm, y, target)
    margin = t.margin(hm, y, target)
    assert ok.tolist() == [True, False]
    assert ((margin < 0) == ok).all()
    o = task(goal="out_of_region")
    out_t = o.make_targets(y)
    hm2 = gaussian_heatmaps(torch.cat([out_t[:1], y[1:]]), (16, 16), (32, 32), 1.0).requires_grad_(True)
    assert ((o.margin(hm2, y, out_t) < 0) == o.success(hm2, y, out_t)).all()
    o.margin(hm2, y, out_t)[1].backward()
    assert float(hm2.grad.abs().sum()) > 0


def test_mse_objective_and_training_loss_vanish_at_the_target():
    t = task(goal="rotating_eyes", objective="mse")
    y = torch.rand(1, 68, 2, generator=torch.Generator().manual_seed(3)) * 20 + 6
    target = t.make_targets(y)
    hm = t.target_heatmaps(torch.zeros(1, 68, 16, 16), target)
    assert float(t.objective(hm, y, target)) == pytest.approx(0.0, abs=1e-12)
    assert float(t.loss(t.target_heatmaps(hm, y), y)) == pytest.approx(0.0, abs=1e-12)
    assert float(t.objective(t.target_heatmaps(hm, y), y, target)) > 0


def test_config_errors_name_the_key():
    from advlab.errors import ConfigError

    with pytest.raises(ConfigError, match="task.goal"):
        parse_config(Landmarks.Config, {"name": "landmarks", "goal": "spin"}, "task")
    with pytest.raises(ConfigError, match="task.region_size"):
        parse_config(Landmarks.Config, {"name": "landmarks", "region_size": 1.5}, "task")
