"""``pipeline=semantic_adv_landmarks``: SemanticAdv against a face landmark detector (Qiu et al., ECCV 2020,
section 4.3, appendix B, Table D, Fig. 6).

Stages (:meth:`SemanticAdvLandmarksPipeline.run` chains them):

1. victim: a heatmap landmark detector (``victim=fan``), trained by advlab on the dataset's landmarks (cached) or
   the published FAN weights from ``victim.checkpoint``; :func:`victim_nme` scores it on the test annotations
   (``clean/nme_gt``, ``clean/r_out_gt``) when the dataset has them;
2. :func:`choose_images`: ``pipeline.num_images`` test images (seeded);
3. the StarGAN generator, loaded or trained and cached by :func:`advlab.pipelines.semantic_adv.prepare_generator`
   (the verification pipeline's generator stage, shared);
4. :func:`attack_goal`, per goal of ``pipeline.goals`` (``rotating_eyes``, ``out_of_region``): the reference
   landmarks (``pipeline.reference``: the annotations, or the victim's prediction on the source when the dataset
   has none, as for CelebA), the goal's targets from them (:meth:`advlab.tasks.landmarks.Landmarks.make_targets`),
   and the SemanticAdv attack (:class:`advlab.attacks.semantic_adv.SemanticAdv`: feature-map interpolation with a
   per-element alpha, clamp, smoothness weight; its loss is the task's margin, i.e. the Houdini objective
   ``task.objective=houdini``) for every attribute of ``attack.attributes``, each image x attribute a row;
5. :func:`goal_metrics`: the metric of the goal on the victim's prediction of the pristine source, of the full
   edit ``G(x', c_new)`` before optimisation, and of the adversarial image, per attribute (Table D's columns), the
   best attribute per image, and the success rate;
6. :func:`save_goal_pictures`: source / edited / adversarial rows with the predicted landmarks (dots) and the
   targets (crosses), the Out of Region box dashed.

Metrics (Rotating Eyes: NME between the prediction and the target on the eye landmarks, lower is better for the
attacker; Out of Region: ``r_out`` the share of landmarks outside the box, higher is better, and ``r_in = 1 -
r_out``, Table D's row, see docs/papers/semanticadv.md): ``clean/nme``, ``attack/nme_edit``, ``attack/nme``
(mean over images and attributes), ``attack/nme_best``, ``attack/nme_<attribute>``; the same for ``r_out`` and
``r_in``; ``attack/asr_<goal>``, ``attack/asr`` (all goals), ``attack/iters``, ``attack/time_per_image_s``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from advlab.attacks.semantic_adv import SemanticAdv, SemanticAdvConfig
from advlab.data.faces import FaceAttributeData
from advlab.errors import ConfigError
from advlab.generators.stargan import AttributeGenerator, StarGANGenerator
from advlab.pipelines.base import PIPELINES, Pipeline
from advlab.pipelines.configs import SemanticAdvLandmarksPipelineConfig  # noqa: F401
from advlab.pipelines.semantic_adv import generator_attributes, prepare_generator
from advlab.reporting.landmark_pictures import save_landmark_rows
from advlab.tasks.landmarks import Landmarks, nme, r_out
from advlab.victims.base import VICTIMS

if TYPE_CHECKING:
    from advlab.context import RunContext

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class GoalOutcome:
    """One goal's attack over all chosen images (host tensors)."""

    goal: str
    pristine: Tensor  # the goal's metric on the prediction of the source [n]
    edit: Tensor  # ... of G(x', c_new), before optimisation [n, K]
    adv: Tensor  # ... of the adversarial image [n, K]
    success: Tensor  # bool [n, K]
    iters: Tensor  # [n, K]
    seconds: float
    pictures: dict[str, Tensor] | None  # the first batch: x, x_edit, x_adv, predictions, targets


# ---- stages -------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: nn.Module, task: Landmarks, x: Tensor, batch: int = 128) -> Tensor:
    return torch.cat([task.predict(model(x[s : s + batch])) for s in range(0, len(x), batch)])


def reference_landmarks(data: FaceAttributeData, mode: str) -> bool:
    """Whether the reference is the dataset's annotations (True) or the victim's prediction (False)."""
    has = getattr(data, "landmarks", None) is not None and data.landmarks("test") is not None  # type: ignore[attr-defined]
    if mode == "ground_truth" and not has:
        raise ConfigError(
            "pipeline.reference=ground_truth: the dataset has no 68-point annotations; use reference=prediction"
        )
    return has if mode == "auto" else mode == "ground_truth"


@torch.no_grad()
def victim_nme(model: nn.Module, task: Landmarks, data: FaceAttributeData, limit: int | None, device) -> dict:
    """The victim's NME to the test annotations and their r_out (``{}`` without annotations)."""
    gt = data.landmarks("test") if hasattr(data, "landmarks") else None  # type: ignore[attr-defined]
    if gt is None:
        return {}
    n = len(gt) if limit is None else min(limit, len(gt))
    idx = torch.arange(n)
    pred = predict(model, task, data.load_images("test", idx).to(device)).cpu()
    return {
        "clean/nme_gt": float(nme(pred, gt[idx], gt[idx]).mean()),
        "clean/r_out_gt": float(r_out(gt[idx], task.box).mean()),
    }


def choose_images(data: FaceAttributeData, n: int, seed: int) -> Tensor:
    total = len(data.identities("test"))
    if n > total:
        logger.warning(f"pipeline.num_images={n} but the test split has {total} images")
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[: min(n, total)]


def goal_value(task: Landmarks, pred: Tensor, ref: Tensor, target: Tensor) -> Tensor:
    """The goal's metric per row: NME to the target on the eyes (rotating_eyes) or r_out (out_of_region)."""
    if task.params.goal == "rotating_eyes":
        return nme(pred, target, ref, task.goal_points)
    return r_out(pred, task.box)


def attack_goal(
    task: Landmarks,
    attack_params: SemanticAdvConfig,
    model: nn.Module,
    generator: AttributeGenerator,
    attr_idx: list[int],
    data: FaceAttributeData,
    index: Tensor,
    use_annotations: bool,
    batch_size: int,
    device,
) -> GoalOutcome:
    """SemanticAdv towards ``task``'s goal on the images ``index``, every attribute of ``attr_idx``."""
    attack = SemanticAdv(attack_params, task)
    k = len(attr_idx)
    pristine, edit, adv, success, iters, pictures = [], [], [], [], [], None
    t0 = time.perf_counter()
    for s in range(0, len(index), batch_size):
        idx = index[s : s + batch_size]
        x = data.load_images("test", idx).to(device)
        c = data.attributes("test")[idx].to(device)
        clean_pred = predict(model, task, x)
        ref = data.landmarks("test")[idx].to(device) if use_annotations else clean_pred  # type: ignore[attr-defined]
        target = task.make_targets(ref)
        res = attack.run(model, generator, x, c, ref, target, attr_idx)
        b = x.shape[0]
        rows = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731
        edit_pred = predict(model, task, res.x_edit.flatten(0, 1))
        adv_pred = predict(model, task, res.x_adv.flatten(0, 1))
        pristine.append(goal_value(task, clean_pred, ref, target).cpu())
        edit.append(goal_value(task, edit_pred, rows(ref), rows(target)).view(b, k).cpu())
        adv.append(goal_value(task, adv_pred, rows(ref), rows(target)).view(b, k).cpu())
        success.append(res.success.cpu())
        iters.append(res.iters.cpu())
        if pictures is None:
            pictures = {
                "x": x.cpu(), "x_edit": res.x_edit.cpu(), "x_adv": res.x_adv.cpu(), "clean_pred": clean_pred.cpu(),
                "edit_pred": edit_pred.view(b, k, -1, 2).cpu(), "adv_pred": adv_pred.view(b, k, -1, 2).cpu(),
                "target": target.cpu(),
            }  # fmt: skip
    return GoalOutcome(
        task.params.goal, torch.cat(pristine), torch.cat(edit), torch.cat(adv), torch.cat(success),
        torch.cat(iters), time.perf_counter() - t0, pictures,
    )  # fmt: skip


def goal_metrics(outcome: GoalOutcome, attr_names: list[str]) -> dict[str, float]:
    """Table D's row for one goal (pristine and per attribute) plus the edit, the mean, the best attribute per
    image and the success rate; Out of Region also as ``r_in = 1 - r_out``."""
    name = "nme" if outcome.goal == "rotating_eyes" else "r_out"
    best = outcome.adv.min(dim=1).values if name == "nme" else outcome.adv.max(dim=1).values
    m = {
        f"clean/{name}": float(outcome.pristine.mean()),
        f"attack/{name}_edit": float(outcome.edit.mean()),
        f"attack/{name}": float(outcome.adv.mean()),
        f"attack/{name}_best": float(best.mean()),
        f"attack/asr_{outcome.goal}": float(outcome.success.float().mean()),
        f"attack/iters_{outcome.goal}": float(outcome.iters.mean()),
    }
    for j, a in enumerate(attr_names):
        m[f"attack/{name}_{a}"] = float(outcome.adv[:, j].mean())
    if name == "r_out":
        for key in [k for k in m if k.split("/")[1].startswith("r_out")]:
            m[key.replace("r_out", "r_in")] = 1.0 - m[key]
    return m


def save_goal_pictures(
    ctx: RunContext, outcome: GoalOutcome, task: Landmarks, attr_names: list[str], examples: int
) -> Path | None:
    """Source (prediction, targets) / G(x', c_new) / adversarial rows, the attribute that did best per image."""
    pics = outcome.pictures
    if pics is None or not examples:
        return None
    m = min(examples, pics["x"].shape[0])
    adv = outcome.adv[:m]
    best = adv.argmin(dim=1) if outcome.goal == "rotating_eyes" else adv.argmax(dim=1)
    cols = torch.arange(m)
    name = "NME" if outcome.goal == "rotating_eyes" else "r_out"
    titles = [
        (f"+/-{attr_names[int(best[j])]} {name} {float(outcome.pristine[j]):.2f}->{float(adv[j, best[j]]):.2f}",
         "green" if bool(outcome.success[j, best[j]]) else "black")
        for j in range(m)
    ]  # fmt: skip
    target = pics["target"][:m]
    rows = [
        ("source (prediction)", pics["x"][:m], pics["clean_pred"][:m], target),
        ("G(x', c_new)", pics["x_edit"][cols, best], pics["edit_pred"][cols, best], None),
        ("adversarial", pics["x_adv"][cols, best], pics["adv_pred"][cols, best], target),
    ]
    box = task.box if outcome.goal == "out_of_region" else None
    path = save_landmark_rows(rows, titles, ctx.run_dir / f"semanticadv_landmarks_{outcome.goal}.png", box)
    ctx.recorder.image(f"examples_{outcome.goal}", path, caption=f"SemanticAdv {outcome.goal}")
    return path


# ---- the pipeline -----------------------------------------------------------------------------------------


@PIPELINES.register("semantic_adv_landmarks")
class SemanticAdvLandmarksPipeline(Pipeline):
    Config = SemanticAdvLandmarksPipelineConfig

    def check(self, ctx: RunContext) -> None:
        spec, p = ctx.spec, self.params
        from advlab.data.base import DATASETS

        data_cls = DATASETS.get(spec.dataset.name)
        if not issubclass(data_cls, FaceAttributeData) or not hasattr(data_cls, "landmarks"):
            raise ConfigError(
                "pipeline=semantic_adv_landmarks needs a face dataset with attributes and landmarks "
                f"(synthfaces_landmarks, celeba_landmarks), got dataset={spec.dataset.name}"
            )
        if spec.task.name != "landmarks":
            raise ConfigError(f"pipeline=semantic_adv_landmarks needs task=landmarks (got {spec.task.name})")
        if spec.attack.name != "semantic_adv":
            raise ConfigError(
                f"pipeline=semantic_adv_landmarks runs attack=semantic_adv (got {spec.attack.name})"
            )
        if not VICTIMS.get(spec.victim.name).trainable and not spec.victim.checkpoint:
            raise ConfigError(f"victim: '{spec.victim.name}' is not trained by advlab; set victim.checkpoint")
        generator_attributes(p, data_cls.configured_attributes(spec.dataset))  # type: ignore[arg-type]
        StarGANGenerator(1, 4, p.generator.repeat_num).split_index(spec.attack.feature_layer)

    def run(self, ctx: RunContext) -> tuple[dict[str, float], dict[str, Any]]:
        spec, p = ctx.spec, self.params
        parts = ctx.build()
        data: FaceAttributeData = parts.data  # type: ignore[assignment]
        task: Landmarks = parts.task  # type: ignore[assignment]
        victim, victim_info = ctx.prepare_victim(parts)
        victim = victim.to(spec.device).eval()
        metrics: dict[str, float] = victim_nme(victim, task, data, p.eval_images, spec.device)
        use_annotations = reference_landmarks(data, p.reference)
        index = choose_images(data, p.num_images, p.image_seed)
        extra: dict[str, Any] = {"victim": {"name": spec.victim.name, **victim_info}}
        generator, extra["generator"] = prepare_generator(ctx, data, p, spec.attack.feature_layer)  # type: ignore[arg-type]
        attr_idx = SemanticAdv(spec.attack, task).attribute_indices(data.attribute_names)
        names = [data.attribute_names[i] for i in attr_idx]
        outcomes = []
        for goal in p.goals:
            logger.info(f"SemanticAdv landmarks: {goal}, {len(index)} images x {len(names)} attributes")
            outcome = attack_goal(
                task.with_goal(goal), spec.attack, victim, generator, attr_idx, data, index, use_annotations,
                p.batch_size, spec.device,
            )  # fmt: skip
            outcomes.append(outcome)
            metrics.update(goal_metrics(outcome, names))
            save_goal_pictures(ctx, outcome, task.with_goal(goal), names, p.grid_examples)
        metrics["attack/asr"] = float(torch.cat([o.success.flatten().float() for o in outcomes]).mean())
        metrics["attack/iters"] = float(torch.cat([o.iters.flatten() for o in outcomes]).mean())
        n_att = sum(o.adv.numel() for o in outcomes)
        metrics["attack/time_per_image_s"] = sum(o.seconds for o in outcomes) / max(n_att, 1)
        extra["semantic_adv_landmarks"] = {
            "goals": list(p.goals),
            "attributes": names,
            "reference": "annotations" if use_annotations else "victim prediction",
            "num_images": len(index),
            "table_d": {o.goal: {"pristine": float(o.pristine.mean()),
                                 **{a: float(o.adv[:, j].mean()) for j, a in enumerate(names)}}
                        for o in outcomes},
        }  # fmt: skip
        ctx.recorder.log(metrics)
        return metrics, extra
