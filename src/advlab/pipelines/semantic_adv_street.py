"""``pipeline=semantic_adv_street``: SemanticAdv's street-view segmentation attack (Qiu et al., ECCV 2020,
section 4.4, Fig. 7) on a dataset with instance maps (``digits_street``, Cityscapes with instance ids).

Stages (:meth:`SemanticAdvStreetPipeline.run` chains them):

1. the segmentation victim (``victim.checkpoint``, e.g. DRN-D-22's released Cityscapes model, or trained by the
   fit loop and cached) and the label-map-conditioned generator (Hong et al. 2018,
   generators/label_map_manipulation.py; ``pipeline.generator.checkpoint`` or trained by
   loops/label_map_fit.py and cached, :func:`prepare_generator`);
2. per case of ``pipeline.cases`` (Fig. 7: "pedestrian vanishes", "cyclist -> pedestrian"),
   :func:`choose_instances`: ``num_images`` test images, in each the largest instance of ``source_class`` with at
   least ``min_instance_pixels`` pixels;
3. :func:`insert_objects`: the manipulated label map ``L'``, an ``insert_class`` object standing next to the
   target instance (same ground line, height ``insert_scale`` times the instance's, the dataset's silhouette
   or an ellipse); the generator's box is the object's bounding box (grown by ``gen_train.box_margin``);
4. :func:`attack_batch`: features ``f0 = E(x_ctx, L)``, ``f1 = E(x_ctx, L')`` of the context image with the box
   erased; ``x_adv = D((1 - alpha) f0 + alpha f1)`` with a per-element ``alpha`` optimised by SemanticAdv's
   loop (attacks/semantic_adv.py :func:`optimise_interpolation`: Adam, clamp to ``[alpha_min, alpha_max]``,
   smoothness ``tv_weight``) so that the target instance's pixels take ``target_class``: the loss is the task's
   objective on the instance's pixels only (``task.objective=houdini``: the Houdini surrogate of their 0-1 error,
   as in the paper); a row stops when the instance succeeds;
5. scores (:func:`advlab.tasks.segmentation.instance_outcome`) of the source image ``x``, the reconstruction
   ``D(f0)``, the full edit ``D(f1)`` and ``x_adv``; pictures.

Metrics, per case ``<c>`` and averaged over cases (no suffix): ``attack/instance_success[_<c>]`` (mean share of
the instance's pixels given the target label, or for ``vanish`` no longer labelled as its class, on
``x_adv``), ``attack/asr[_<c>]`` (share of instances where that share reaches ``task.success_pixel_acc``),
``clean/instance_success[_<c>]`` / ``clean/asr[_<c>]`` (the same on the pristine source image),
``attack/ref_recon[_<c>]`` and ``attack/ref_edit[_<c>]`` (instance success of ``D(f0)`` and ``D(f1)``),
``attack/rest_pixel_acc[_<c>]`` / ``clean/rest_pixel_acc[_<c>]`` (pixel accuracy outside the instance),
``attack/iters[_<c>]``, ``attack/l2_to_source[_<c>]``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from advlab.attacks.semantic_adv import SemanticAdvConfig, optimise_interpolation
from advlab.data.configs import content_key
from advlab.errors import ConfigError
from advlab.generators.label_map_manipulation import LabelMapGenerator, box_of, erase_box
from advlab.loops.label_map_fit import fit_label_map_generator, load_split
from advlab.pipelines.base import PIPELINES, Pipeline
from advlab.pipelines.configs import SemanticAdvStreetPipelineConfig, StreetCase  # noqa: F401
from advlab.reporting.pictures import save_image_rows
from advlab.tasks.segmentation import Segmentation, instance_goal, instance_outcome
from advlab.utils import frozen
from advlab.victims.base import load_weights_only

if TYPE_CHECKING:
    from advlab.context import RunContext

logger = logging.getLogger(__name__)
GENERATOR_CACHE_FORMAT = 1
#: (height, width) of an inserted object as multiples of the target instance's height, by class name
INSERT_SIZE = {
    "car": (0.6, 1.2),
    "truck": (0.9, 1.6),
    "bus": (1.0, 2.0),
    "person": (1.0, 0.35),
    "rider": (1.0, 0.6),
    "cyclist": (1.0, 0.6),
}


@dataclasses.dataclass
class ResolvedCase:
    name: str
    source: int  # class indices
    target: int
    insert: int
    mode: str


@dataclasses.dataclass
class CaseOutcome:
    """One case, every attacked instance (host tensors ``[n]``)."""

    case: ResolvedCase
    index: Tensor  # test-image indices
    scores: dict[
        str, dict[str, Tensor]
    ]  # source | recon | edit | adv -> instance_success, success, rest_pixel_acc
    iters: Tensor
    l2: Tensor
    seconds: float
    pictures: dict[str, Tensor] | None  # the first batch: x, labels, labels_new, x_adv, pred_clean, pred_adv


# ---- generator ----------------------------------------------------------------------------------------------


def build_generator(params: SemanticAdvStreetPipelineConfig, num_classes: int) -> LabelMapGenerator:
    g = params.generator
    return LabelMapGenerator(
        num_classes, g.base_channels, g.feature_channels, g.n_down, g.n_res, g.edge_kernel
    )


def prepare_generator(
    ctx: RunContext, data: Any, params: SemanticAdvStreetPipelineConfig
) -> tuple[LabelMapGenerator, dict[str, Any]]:
    """Load ``pipeline.generator.checkpoint`` or train the generator (cached by a hash, file-locked, resumable)."""
    spec = ctx.spec
    net = build_generator(params, data.info.num_classes)
    if params.generator.checkpoint:
        state = load_weights_only(params.generator.checkpoint, "pipeline.generator.checkpoint")
        net.load_state_dict(state)
        return net.to(spec.device).eval(), {"source": "checkpoint", "path": params.generator.checkpoint}
    dataset = content_key(spec.dataset)
    key_parts = {
        "format": GENERATOR_CACHE_FORMAT,
        "dataset": dataset,
        "generator": dataclasses.asdict(params.generator),
        "gen_train": {
            k: v
            for k, v in dataclasses.asdict(params.gen_train).items()
            if k not in ("checkpoint_every", "log_every")
        },
        "seed": spec.seed,
    }
    artifact = ctx.cache.artifact("generators", f"{spec.dataset.name}-label_map", key_parts)
    t0 = time.perf_counter()

    def train(resume_path: Path) -> dict[str, Tensor]:
        logger.info(f"training the label-map generator on {spec.dataset.name}; cache: {artifact.path}")
        torch.manual_seed(spec.seed)
        trained = build_generator(params, data.info.num_classes)
        fit_label_map_generator(
            trained,
            data,
            params.gen_train,
            spec.device,
            spec.seed,
            resume_path,
            ctx.recorder.log,
            spec.progress,
        )
        return {k: v.cpu() for k, v in trained.state_dict().items()}

    weights, cached = ctx.cache.load_or_build(artifact, train)
    net.load_state_dict(weights)
    info = {"source": "cache" if cached else "trained", "path": str(artifact.path), "key": artifact.key}
    if not cached:
        info["train_time_s"] = round(time.perf_counter() - t0, 2)
    return net.to(spec.device).eval(), info


# ---- instances and the manipulated label map -------------------------------------------------------------------


def resolve_cases(params: SemanticAdvStreetPipelineConfig, class_names: list[str]) -> list[ResolvedCase]:
    """Class names of every case -> indices (unknown names are a ConfigError naming the key)."""
    out = []
    for i, c in enumerate(params.cases):
        idx = {}
        for field in ("source_class", "target_class", "insert_class"):
            name = getattr(c, field)
            if name not in class_names:
                raise ConfigError(
                    f"pipeline.cases[{i}].{field}: '{name}' is not a class of the dataset ({', '.join(class_names)})"
                )
            idx[field] = class_names.index(name)
        if c.insert_class not in INSERT_SIZE:
            raise ConfigError(
                f"pipeline.cases[{i}].insert_class: no object size for '{c.insert_class}' (known: "
                f"{', '.join(INSERT_SIZE)})"
            )
        out.append(
            ResolvedCase(c.name, idx["source_class"], idx["target_class"], idx["insert_class"], c.mode)
        )
    return out


def choose_instances(data: Any, source: int, n: int, min_pixels: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` test images (seeded order) with an instance of class ``source`` of at least ``min_pixels``; per
    image its largest such instance: ``(image indices [m], instance ids [m])``, ``m <= n``."""
    total = len(data.dataset("test"))
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed))
    images, ids_out = [], []
    for start in range(0, total, 256):
        chunk = order[start : start + 256]
        ids = data.load_instances("test", chunk)
        cls = data.instance_classes(ids)
        for j, i in enumerate(chunk.tolist()):
            cand = ids[j][cls[j] == source]
            if cand.numel() == 0:
                continue
            values, counts = cand.unique(return_counts=True)
            best = int(counts.argmax())
            if int(counts[best]) >= min_pixels:
                images.append(i)
                ids_out.append(int(values[best]))
            if len(images) == n:
                return torch.tensor(images), torch.tensor(ids_out)
    if not images:
        raise ConfigError(
            f"pipeline.min_instance_pixels: no test image has an instance of class {source} with >= {min_pixels} "
            "pixels; lower it"
        )
    logger.warning(f"pipeline.num_images={n} but only {len(images)} test images have a suitable instance")
    return torch.tensor(images), torch.tensor(ids_out)


def ellipse(h: int, w: int) -> Tensor:
    yy = (torch.arange(h, dtype=torch.float32) - (h - 1) / 2) / (h / 2)
    xx = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2) / (w / 2)
    return yy[:, None] ** 2 + xx[None, :] ** 2 <= 1.0


def insert_objects(
    labels: Tensor, mask: Tensor, insert: int, insert_name: str, scale: float, data: Any
) -> tuple[Tensor, Tensor]:
    """The manipulated label maps: per image an object of class ``insert`` standing next to the instance ``mask``
    (bottom on the instance's bottom row; left of it when it fits, else right), never over the instance's own
    pixels. Returns ``(labels', object masks)`` ``[B, H, W]``. Label-map preparation, once per image."""
    b, h, w = labels.shape
    new = labels.clone()
    obj = torch.zeros_like(mask)
    rh, rw = INSERT_SIZE[insert_name]
    for i in range(b):
        rows = torch.nonzero(mask[i].any(1)).flatten()
        cols = torch.nonzero(mask[i].any(0)).flatten()
        top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        ih = bottom - top + 1
        oh = max(3, min(h, round(scale * rh * ih)))
        ow = max(3, min(w, round(scale * rw * ih)))
        shape = data.object_shape(insert, oh, ow) if hasattr(data, "object_shape") else ellipse(oh, ow)
        shape = shape.to(labels.device)
        o_top = max(0, bottom - oh + 1)
        shape = shape[shape.shape[0] - (bottom - o_top + 1) :]
        o_left = left - ow if left - ow >= 0 else min(right + 1, w - ow)
        region = (slice(o_top, o_top + shape.shape[0]), slice(o_left, o_left + ow))
        put = shape & ~mask[i][region]
        new[i][region] = torch.where(put, torch.full_like(new[i][region], insert), new[i][region])
        obj[i][region] = put
    return new, obj


# ---- the attack ----------------------------------------------------------------------------------------------


def score(task: Segmentation, out: Tensor, y: Tensor, mask: Tensor, cls: Tensor, case: ResolvedCase) -> dict:
    pred = task.predict(task._fit(out, y))
    o = instance_outcome(
        pred, y, mask, cls, case.target, case.mode, task.params.success_pixel_acc, task.ignore_index
    )
    return {"instance_success": o.instance_success, "success": o.success, "rest_pixel_acc": o.rest_pixel_acc}


def attack_batch(
    attack_params: SemanticAdvConfig,
    task: Segmentation,
    victim: nn.Module,
    generator: LabelMapGenerator,
    x: Tensor,
    y: Tensor,
    mask: Tensor,
    case: ResolvedCase,
    box_margin: float,
    insert_scale: float,
    insert_name: str,
    data: Any,
) -> dict[str, Any]:
    """One batch of target instances: manipulated label maps, feature interpolation optimised towards the
    case's target on the instance's pixels (the task's objective: ``task.objective=houdini`` for the paper's
    Houdini loss)."""
    p = attack_params
    cls = torch.full((x.shape[0],), case.source, dtype=torch.long, device=x.device)
    goal = instance_goal(y, mask, case.target, task.ignore_index)
    y_new, obj = insert_objects(y, mask, case.insert, insert_name, insert_scale, data)
    box = box_of(obj, box_margin) & ~mask  # the instance itself is never erased
    with frozen(victim), frozen(generator):
        with torch.no_grad():
            context = erase_box(x, box)
            f0 = generator.encode(context, y, box)
            f1 = generator.encode(context, y_new, box)
            x_recon, x_edit = generator.decode(f0), generator.decode(f1)
            alpha = torch.full_like(f1, p.alpha_init)
        res = optimise_interpolation(
            p,
            alpha,
            lambda a: generator.decode((1 - a) * f0 + a * f1),
            victim,
            adv_loss=lambda out: -task.attack_loss(out, y, goal),
            success=lambda out: score(task, out, y, mask, cls, case)["success"],
            label=f"semantic_adv street ({case.name})",
            unit="instances",
        )
        with torch.no_grad():
            outs = {
                k: victim(v)
                for k, v in (("source", x), ("recon", x_recon), ("edit", x_edit), ("adv", res.x_adv))
            }
    scores = {k: score(task, o, y, mask, cls, case) for k, o in outs.items()}
    return {
        "scores": scores,
        "iters": res.iters,
        "l2": (res.x_adv - x).flatten(1).norm(dim=1),
        "pictures": {
            "x": x, "labels": y, "labels_new": y_new, "x_edit": x_edit, "x_adv": res.x_adv,
            "pred_clean": task.predict(task._fit(outs["source"], y)),
            "pred_adv": task.predict(task._fit(outs["adv"], y)),
            "instance_success": scores["adv"]["instance_success"],
            "mask": mask,
        },
    }  # fmt: skip


def run_case(
    ctx: RunContext, task, victim, generator, data, case: ResolvedCase, params, attack_params
) -> CaseOutcome:
    spec = ctx.spec
    index, inst = choose_instances(
        data, case.source, params.num_images, params.min_instance_pixels, params.image_seed
    )
    insert_name = data.info.class_names[case.insert]
    collected: dict[str, dict[str, list[Tensor]]] = {}
    iters, l2, first = [], [], None
    t0 = time.perf_counter()
    for s in range(0, len(index), params.batch_size):
        sl = slice(s, s + params.batch_size)
        x, y, ids = (t.to(spec.device) for t in load_split(data, "test", index[sl]))
        mask = ids == inst[sl].to(spec.device).view(-1, 1, 1)
        out = attack_batch(
            attack_params, task, victim, generator, x, y, mask, case, params.gen_train.box_margin,
            params.insert_scale, insert_name, data,
        )  # fmt: skip
        for k, d in out["scores"].items():
            for m, v in d.items():
                collected.setdefault(k, {}).setdefault(m, []).append(v.cpu())
        iters.append(out["iters"].cpu())
        l2.append(out["l2"].cpu())
        if first is None:
            first = {k: v.detach().cpu() for k, v in out["pictures"].items()}
    seconds = time.perf_counter() - t0
    scores = {k: {m: torch.cat(v) for m, v in d.items()} for k, d in collected.items()}
    return CaseOutcome(case, index, scores, torch.cat(iters), torch.cat(l2), seconds, first)


def case_metrics(o: CaseOutcome) -> dict[str, float]:
    s, c = o.scores, o.case.name
    mean = lambda t: float(t.float().mean())  # noqa: E731
    m = {
        f"attack/instance_success_{c}": mean(s["adv"]["instance_success"]),
        f"attack/asr_{c}": mean(s["adv"]["success"]),
        f"clean/instance_success_{c}": mean(s["source"]["instance_success"]),
        f"clean/asr_{c}": mean(s["source"]["success"]),
        f"attack/ref_recon_{c}": mean(s["recon"]["instance_success"]),
        f"attack/ref_edit_{c}": mean(s["edit"]["instance_success"]),
        f"attack/rest_pixel_acc_{c}": mean(s["adv"]["rest_pixel_acc"]),
        f"clean/rest_pixel_acc_{c}": mean(s["source"]["rest_pixel_acc"]),
        f"attack/iters_{c}": mean(o.iters),
        f"attack/l2_to_source_{c}": mean(o.l2),
        f"attack/time_per_instance_s_{c}": o.seconds / max(len(o.index), 1),
        f"attack/num_instances_{c}": float(len(o.index)),
    }
    return m


def overall_metrics(per_case: list[dict[str, float]], names: list[str]) -> dict[str, float]:
    """The mean over cases of every per-case metric, under the key without the case suffix."""
    out: dict[str, float] = {}
    for key in per_case[0]:
        base = key[: -len(names[0]) - 1]
        out[base] = sum(m[f"{base}_{n}"] for m, n in zip(per_case, names)) / len(names)
    return out


def save_pictures(ctx: RunContext, o: CaseOutcome, class_names: list[str], examples: int) -> Path | None:
    """Columns: attacked instances; rows: source, label map (all but the target instance dimmed), manipulated
    label map, G(f1) (the full edit), adversarial, prediction on the source, prediction on the adversarial
    (title: instance success)."""
    from advlab.reporting.segmentation_pictures import colourise

    pics = o.pictures
    if pics is None or not examples:
        return None
    k = min(examples, pics["x"].shape[0])
    n = len(class_names)
    maps = lambda t: (
        torch.from_numpy(  # noqa: E731
            __import__("numpy").stack([colourise(t[j], n) for j in range(k)])
        )
        .permute(0, 3, 1, 2)
        .float()
        / 255.0
    )
    dim = 0.35 + 0.65 * pics["mask"][:k, None].float()  # the target instance at full brightness
    rows = [
        ("source", pics["x"][:k]),
        ("label map (target lit)", maps(pics["labels"]) * dim),
        ("manipulated label map", maps(pics["labels_new"])),
        ("G(x_ctx, L')", pics["x_edit"][:k]),
        ("adversarial", pics["x_adv"][:k]),
        ("prediction (source)", maps(pics["pred_clean"])),
        ("prediction (adversarial)", maps(pics["pred_adv"])),
    ]
    thr = o.scores["adv"]["success"]
    titles = [
        (
            f"{o.case.name}\nsuccess {float(pics['instance_success'][j]):.2f}",
            "green" if bool(thr[j]) else "red",
        )
        for j in range(k)
    ]
    path = save_image_rows(rows, titles, ctx.run_dir / f"semanticadv_street_{o.case.name}.png")
    ctx.recorder.image(f"examples_street_{o.case.name}", path, caption=o.case.name)
    return path


@PIPELINES.register("semantic_adv_street")
class SemanticAdvStreetPipeline(Pipeline):
    Config = SemanticAdvStreetPipelineConfig

    def check(self, ctx: RunContext) -> None:
        spec = ctx.spec
        from advlab.data.base import DATASETS

        data_cls = DATASETS.get(spec.dataset.name)
        if not hasattr(data_cls, "load_instances"):
            raise ConfigError(
                f"pipeline=semantic_adv_street needs a dataset with instance maps (digits_street, cityscapes), "
                f"got dataset={spec.dataset.name}"
            )
        if spec.task.name != "segmentation":
            raise ConfigError(f"pipeline=semantic_adv_street needs task=segmentation (got {spec.task.name})")
        if spec.attack.name != "semantic_adv" or getattr(spec.attack, "interpolation", None) != "feature":
            raise ConfigError(
                "pipeline=semantic_adv_street runs attack=semantic_adv with attack.interpolation=feature "
                f"(got attack={spec.attack.name})"
            )

    def run(self, ctx: RunContext) -> tuple[dict[str, float], dict[str, Any]]:
        spec, p = ctx.spec, self.params
        parts = ctx.build()
        data, task = parts.data, parts.task
        cases = resolve_cases(p, data.info.class_names)  # before any training
        side = 2**p.generator.n_down
        _, h, w = data.info.image_shape
        if h % side or w % side:
            raise ConfigError(f"pipeline.generator.n_down: image size {h}x{w} is not divisible by {side}")
        victim, victim_info = ctx.prepare_victim(parts)
        victim = victim.to(spec.device).eval()
        generator, gen_info = prepare_generator(ctx, data, p)
        outcomes = [run_case(ctx, task, victim, generator, data, c, p, spec.attack) for c in cases]
        per_case = [case_metrics(o) for o in outcomes]
        metrics: dict[str, float] = {}
        for m in per_case:
            metrics.update(m)
        metrics.update(overall_metrics(per_case, [c.name for c in cases]))
        for o in outcomes:
            save_pictures(ctx, o, data.info.class_names, p.grid_examples)
        extra = {
            "victim": {"name": spec.victim.name, **victim_info},
            "generator": gen_info,
            "semantic_adv_street": {
                "objective": task.params.objective,
                "cases": [dataclasses.asdict(c) for c in p.cases],
                "images": {o.case.name: o.index.tolist() for o in outcomes},
            },
        }
        ctx.recorder.log(metrics)
        return metrics, extra
