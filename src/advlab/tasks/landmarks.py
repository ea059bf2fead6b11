"""Face landmark detection: the victim outputs one heatmap per landmark (68, the 300-W / iBUG layout), decoded
to ``(x, y)`` pixel coordinates; SemanticAdv's targeted landmark attacks (Qiu et al., ECCV 2020, section 4.3 and
appendix B) on top.

Coordinates are continuous image pixels with pixel ``i`` covering ``[i, i + 1)`` (its centre at ``i + 0.5``);
ground truth and targets are float ``[B, N, 2]`` tensors of ``(x, y)``.

Decoding (:func:`heatmap_peaks`, as the face-alignment package's ``get_preds_fromhm``): the arg-max pixel of each
heatmap, shifted by a quarter pixel towards the larger of its two neighbours along each axis (only away from
the border), at the pixel's centre; heatmap pixels are then scaled to image pixels by the image/heatmap size
ratio (the published FAN: 256 -> 64, a factor 4).

Metrics (appendix B):

- NME (Eq. 7, :func:`nme`): mean over the landmarks of ``||p_k - p_hat_k||_2 / sqrt(W_B * H_B)``, ``W_B x H_B`` the
  ground-truth landmarks' bounding box; for Rotating Eyes the attack is scored by the NME between the prediction
  and the *target* on the moved landmarks (the eyes; lower is better for the attacker);
- ``r_out`` (:func:`r_out`): ``N_out / N_total``, the share of predicted landmarks outside a centred box
  (:func:`centred_box`, side ``task.region_size`` of the image side; higher is better for the attacker).

Targets (``task.goal``, :meth:`Landmarks.make_targets`, built from the reference landmarks ``y``):

- ``rotating_eyes``: the eye landmarks 36-47 rotated by ``task.rotation_deg`` (90) degrees counter-clockwise *as
  seen in the image* about the eyes' centre (the mean of the 12 points; with y pointing down a point to the
  right of the centre moves above it), every other landmark unchanged (:func:`rotate_points`);
  success: ``NME(prediction, target)`` on the eyes below ``task.success_nme``;
- ``out_of_region``: every landmark inside the box moved radially from the box centre to just outside the box
  (:func:`out_of_region_targets`); success: ``r_out >= task.success_r_out``.

Attack objective (``task.objective``), minimised towards the target (:meth:`Landmarks.objective`):

- ``houdini`` (SemanticAdv Eq. 5, with :func:`advlab.tasks.houdini.houdini`), per landmark ``k``: the score
  ``g(x, y_k)`` is the heatmap value at location ``y_k`` (bilinear), ``y_hat_k`` the decoded prediction and the task
  loss ``l_k = ||y_hat_k - y_tgt_k|| / sqrt(W_B H_B)`` (for Out of Region 0 once ``y_hat_k`` is outside the box)
  (``task.houdini_score=range`` scores with each heatmap rescaled to [0, 1] by
  its minimum and maximum instead, for heatmaps trained as logits); summed over the goal's landmarks (the
  structured output's loss, as Houdini sums over pixels for segmentation);
- ``mse`` / ``ce``: the heatmap squared error to Gaussians at the target / the cross-entropy of each heatmap's
  softmax over its pixels against the normalised target Gaussian (the two training losses aimed at the target).

:meth:`Landmarks.margin` is that objective (>= 0) while the goal is not met and -1 once it is, so SemanticAdv's
``max(margin, 0)`` loss and early stop work unchanged. Training (``task.train_loss``): FAN's heatmap MSE to
Gaussians of std ``task.heatmap_sigma`` heatmap pixels at the ground truth, or the cross-entropy between each
heatmap's softmax over its pixels and the normalised Gaussian (``spatial_ce``; the embedded preset's, it converges
in a few CPU epochs where the MSE first sits at the all-zero heatmap).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.data.info import DataInfo
from advlab.metrics.meter import Meter
from advlab.tasks.base import TASKS, Task
from advlab.tasks.configs import LandmarksConfig  # noqa: F401
from advlab.tasks.houdini import houdini

#: the eye landmarks of the 68-point layout (36-41 the eye on the image's left, 42-47 the other)
EYES = list(range(36, 48))


# ---- decoding ------------------------------------------------------------------------------------------------


def heatmap_peaks(heatmaps: Tensor) -> Tensor:
    """``[B, N, h, w]`` heatmaps -> ``[B, N, 2]`` ``(x, y)`` in heatmap pixels (centre of pixel ``i`` at ``i + 0.5``):
    the arg-max, moved 0.25 towards the larger neighbour on each axis where both neighbours exist."""
    b, n, h, w = heatmaps.shape
    flat = heatmaps.detach().reshape(b, n, h * w)
    idx = flat.argmax(dim=2)
    px, py = idx % w, idx // w
    inside = (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1)
    pxc, pyc = px.clamp(1, w - 2), py.clamp(1, h - 2)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        return flat.gather(2, (yy * w + xx)[..., None])[..., 0]

    dx = torch.sign(at(pyc, pxc + 1) - at(pyc, pxc - 1))
    dy = torch.sign(at(pyc + 1, pxc) - at(pyc - 1, pxc))
    shift = torch.stack([dx, dy], dim=-1) * 0.25 * inside[..., None]
    return torch.stack([px, py], dim=-1).to(heatmaps.dtype) + 0.5 + shift


def heatmap_scale(heatmap_hw: tuple[int, int], image_hw: tuple[int, int], like: Tensor) -> Tensor:
    """``(s_x, s_y)``: image pixels per heatmap pixel."""
    return torch.tensor(
        [image_hw[1] / heatmap_hw[1], image_hw[0] / heatmap_hw[0]], dtype=like.dtype, device=like.device
    )


def decode_landmarks(heatmaps: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Heatmaps -> landmark coordinates in image pixels."""
    peaks = heatmap_peaks(heatmaps)
    return peaks * heatmap_scale(tuple(heatmaps.shape[-2:]), image_hw, peaks)


def gaussian_heatmaps(
    points: Tensor, heatmap_hw: tuple[int, int], image_hw: tuple[int, int], sigma: float
) -> Tensor:
    """``[B, N, 2]`` image-pixel points -> ``[B, N, h, w]`` Gaussians (peak 1, std ``sigma`` heatmap pixels)."""
    h, w = heatmap_hw
    p = points / heatmap_scale(heatmap_hw, image_hw, points)
    xs = torch.arange(w, dtype=points.dtype, device=points.device) + 0.5
    ys = torch.arange(h, dtype=points.dtype, device=points.device) + 0.5
    gx = torch.exp(-((xs - p[..., 0:1]) ** 2) / (2 * sigma**2))  # [B, N, w]
    gy = torch.exp(-((ys - p[..., 1:2]) ** 2) / (2 * sigma**2))  # [B, N, h]
    return gy[..., :, None] * gx[..., None, :]


def heatmap_values_at(heatmaps: Tensor, points: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Bilinear heatmap value of landmark ``k`` at image-pixel point ``points[:, k]`` -> ``[B, N]`` (0 outside)."""
    b, n, h, w = heatmaps.shape
    p = points / heatmap_scale((h, w), image_hw, points)
    grid = torch.stack([p[..., 0] / w * 2 - 1, p[..., 1] / h * 2 - 1], dim=-1)  # align_corners=False
    out = F.grid_sample(
        heatmaps.reshape(b * n, 1, h, w), grid.reshape(b * n, 1, 1, 2), mode="bilinear", align_corners=False
    )
    return out.reshape(b, n)


def spatial_cross_entropy(heatmaps: Tensor, gaussians: Tensor) -> Tensor:
    """``[B, N]`` cross-entropy between each heatmap's softmax over its pixels and the normalised Gaussian."""
    logp = heatmaps.flatten(2).log_softmax(dim=2)
    q = gaussians.flatten(2)
    q = q / q.sum(dim=2, keepdim=True).clamp(min=1e-12)
    return -(q * logp).sum(dim=2)


# ---- geometry and metrics -------------------------------------------------------------------------------------


def box_size(points: Tensor) -> Tensor:
    """``sqrt(W_B * H_B)`` of the bounding box of each row's points ``[B, N, 2]`` -> ``[B]``."""
    extent = points.amax(dim=1) - points.amin(dim=1)
    return (extent[:, 0] * extent[:, 1]).clamp(min=1e-12).sqrt()


def nme(pred: Tensor, ref: Tensor, box_from: Tensor, points: list[int] | None = None) -> Tensor:
    """Normalised mean error (SemanticAdv Eq. 7) per row: mean over ``points`` (all by default) of
    ``||pred_k - ref_k||_2`` divided by ``sqrt(W_B H_B)`` of ``box_from``'s (the ground truth's) bounding box."""
    if points is not None:
        pred, ref = pred[:, points], ref[:, points]
    return (pred - ref).norm(dim=-1).mean(dim=1) / box_size(box_from)


def centred_box(image_hw: tuple[int, int], size: float) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` of the centred box whose sides are ``size`` times the image's."""
    h, w = image_hw
    return (w * (1 - size) / 2, h * (1 - size) / 2, w * (1 + size) / 2, h * (1 + size) / 2)


def outside_box(points: Tensor, box: tuple[float, float, float, float]) -> Tensor:
    """bool ``[B, N]``: the point lies outside the (closed) box."""
    x, y = points[..., 0], points[..., 1]
    return (x < box[0]) | (x > box[2]) | (y < box[1]) | (y > box[3])


def r_out(points: Tensor, box: tuple[float, float, float, float]) -> Tensor:
    """``N_out / N_total`` per row: the share of landmarks outside ``box``."""
    return outside_box(points, box).float().mean(dim=1)


def rotate_points(points: Tensor, which: list[int], degrees: float) -> Tensor:
    """``points`` with the landmarks ``which`` rotated by ``degrees`` counter-clockwise as seen in the image (y
    down) about their centroid; the others unchanged."""
    out = points.clone()
    sel = points[:, which]
    centre = sel.mean(dim=1, keepdim=True)
    d = sel - centre
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    # counter-clockwise on screen = clockwise in (x, y-down) axes: (dx, dy) -> (c dx + s dy, -s dx + c dy)
    rotated = torch.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], dim=-1)
    out[:, which] = centre + rotated
    return out


def out_of_region_targets(points: Tensor, box: tuple[float, float, float, float], margin: float) -> Tensor:
    """Every point inside ``box`` moved along the ray from the box centre to ``margin`` pixels beyond the box
    boundary; points already outside stay."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    d = points - points.new_tensor([cx, cy])
    d = torch.where(d.norm(dim=-1, keepdim=True) < 1e-6, d.new_tensor([0.0, 1.0]), d)  # the centre: downwards
    reach = torch.minimum(hw / d[..., 0].abs().clamp(min=1e-9), hh / d[..., 1].abs().clamp(min=1e-9))
    unit = d / d.norm(dim=-1, keepdim=True)
    moved = points.new_tensor([cx, cy]) + d * reach[..., None] + unit * margin
    return torch.where(outside_box(points, box)[..., None], points, moved)


# ---- the task -------------------------------------------------------------------------------------------------


@TASKS.register("landmarks")
class Landmarks(Task):
    Config = LandmarksConfig
    objective_metric = "nme"

    def __init__(self, params: LandmarksConfig, info: DataInfo):
        super().__init__(params, info)
        self.image_hw = tuple(info.image_shape[1:])
        self.box = centred_box(self.image_hw, params.region_size)  # type: ignore[arg-type]

    @property
    def num_outputs(self) -> int:
        return self.params.num_landmarks

    @property
    def goal_points(self) -> list[int]:
        """The landmarks the goal moves (scored by NME): the eyes for Rotating Eyes, all for Out of Region."""
        return EYES if self.params.goal == "rotating_eyes" else list(range(self.params.num_landmarks))

    def with_goal(self, goal: str) -> Landmarks:
        """This task with another ``goal`` (a new task; ``self`` is unchanged)."""
        import dataclasses

        return Landmarks(dataclasses.replace(self.params, goal=goal), self.info)

    def predict(self, outputs: Tensor) -> Tensor:
        return decode_landmarks(outputs, self.image_hw)  # type: ignore[arg-type]

    def target_heatmaps(self, outputs: Tensor, points: Tensor) -> Tensor:
        return gaussian_heatmaps(points, tuple(outputs.shape[-2:]), self.image_hw, self.params.heatmap_sigma)  # type: ignore[arg-type]

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        target = self.target_heatmaps(outputs, y)
        if self.params.train_loss == "spatial_ce":
            return spatial_cross_entropy(outputs, target).mean()
        return (outputs - target).pow(2).mean()

    # ---- targets ----
    def make_targets(self, y: Tensor) -> Tensor:
        """The goal's target landmarks for reference landmarks ``y``."""
        if self.params.goal == "rotating_eyes":
            return rotate_points(y, EYES, self.params.rotation_deg)
        return out_of_region_targets(y, self.box, margin=1.0)  # one image pixel beyond the boundary

    def sample_targets(self, y: Tensor, generator: torch.Generator) -> Tensor:
        return self.make_targets(y)

    def check_target(self, y: Tensor, target: Tensor) -> None:
        if target.shape != y.shape:
            raise ValueError(
                f"landmark targets must have the shape of y {tuple(y.shape)}, got {tuple(target.shape)}"
            )

    # ---- attack objective and success ----
    def objective(self, outputs: Tensor, y: Tensor, target: Tensor) -> Tensor:
        """Per-sample objective the attacker minimises to move the landmarks to ``target`` (>= 0)."""
        pts = self.goal_points
        if self.params.objective in ("mse", "ce"):
            goal_maps = self.target_heatmaps(outputs, target[:, pts])
            if self.params.objective == "mse":
                return (outputs[:, pts] - goal_maps).pow(2).sum(dim=(2, 3)).mean(dim=1)
            return spatial_cross_entropy(outputs[:, pts], goal_maps).mean(dim=1)
        pred = self.predict(outputs)
        norm = box_size(y)[:, None]
        task_loss = (pred - target).norm(dim=-1) / norm  # [B, N]
        if self.params.goal == "out_of_region":
            task_loss = task_loss * (~outside_box(pred, self.box)).float()
        maps = outputs
        if self.params.houdini_score == "range":
            flat = outputs.flatten(2)
            lo, hi = flat.amin(dim=2, keepdim=True), flat.amax(dim=2, keepdim=True)
            maps = ((flat - lo) / (hi - lo).clamp(min=1e-12)).view_as(outputs)
        score_target = heatmap_values_at(maps, target, self.image_hw)  # type: ignore[arg-type]
        score_pred = heatmap_values_at(maps, pred, self.image_hw)  # type: ignore[arg-type]
        return houdini(score_target[:, pts], score_pred[:, pts], task_loss[:, pts]).sum(dim=1)

    def goal_reached(self, pred: Tensor, y: Tensor, target: Tensor) -> Tensor:
        if self.params.goal == "rotating_eyes":
            return nme(pred, target, y, EYES) < self.params.success_nme
        return r_out(pred, self.box) >= self.params.success_r_out - 1e-9

    def attack_loss(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if (
            target is None
        ):  # untargeted: the heatmap MSE to the ground truth's Gaussians, maximised (Houdini's
            # task loss is 0 while the prediction equals the ground truth, so it cannot start an untargeted attack)
            return (outputs - self.target_heatmaps(outputs, y)).pow(2).sum(dim=(2, 3)).mean(dim=1)
        return -self.objective(outputs, y, target)

    def margin(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return self.params.success_nme - nme(self.predict(outputs), y, y)
        ok = self.goal_reached(self.predict(outputs), y, target)
        return torch.where(
            ok, torch.full_like(ok, -1.0, dtype=outputs.dtype), self.objective(outputs, y, target)
        )

    def success(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        pred = self.predict(outputs)
        if target is None:
            return nme(pred, y, y) >= self.params.success_nme
        return self.goal_reached(pred, y, target)

    def correct(self, outputs: Tensor, y: Tensor) -> Tensor:
        return nme(self.predict(outputs), y, y) < self.params.success_nme

    # ---- metrics ----
    def update_metrics(self, meter: Meter, outputs: Tensor, y: Tensor) -> None:
        pred = self.predict(outputs.detach())
        meter.add("nme", nme(pred, y, y))
        meter.add("r_out", r_out(pred, self.box))

    def update_attack_metrics(
        self, meter: Meter, clean_outputs: Tensor, adv_outputs: Tensor, y: Tensor, target: Tensor | None
    ) -> None:
        super().update_attack_metrics(meter, clean_outputs, adv_outputs, y, target)
        pred = self.predict(adv_outputs.detach())
        if target is not None:
            meter.add("nme", nme(pred, target, y, self.goal_points))
        meter.add("r_out", r_out(pred, self.box))

    def example_grid(self, examples, path):
        from advlab.reporting.landmark_pictures import save_landmark_examples

        return save_landmark_examples(examples, self, path)
