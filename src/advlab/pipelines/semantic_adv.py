"""``pipeline=semantic_adv``: SemanticAdv's face-verification experiment (and its C&W / StrawMan baselines).

Named stages, each a small function with typed inputs and outputs (:meth:`SemanticAdvPipeline.run` only
chains them):

1. victim (trained by the fit loop and cached, or ``victim.checkpoint``); the defense fits what it learns
   from it (``Defense.prepare``, e.g. AMI's witnesses) and wraps it (``defense=input_transform``: what is
   scored, and attacked when ``pipeline.adaptive``); its detector decides at the first FPR's threshold;
2. :func:`choose_thresholds`: the distance threshold at every FPR of ``pipeline.fprs`` from the impostor pairs
   of the ``dev`` split (or ``pipeline.thresholds``, given as L2 distances or, ``threshold_distance:
   squared_l2``, as the official code's squared distances, Table B);
3. :func:`choose_pairs`: ``num_pairs`` (source, target) test images of different identities (seeded);
4. :func:`attack_at_gfpr`: at every generating FPR (G-FPR; its threshold is the attack's kappa, passed as a
   task built at that threshold) with that G-FPR's ``steps`` / ``lr`` (``pipeline.per_fpr``), every attribute
   of ``attack.attributes`` separately; the generator comes from ``pipeline.generator.checkpoint`` or is trained
   (:func:`prepare_generator`);
5. :func:`score_at_tfprs`: success ``d(x_adv, x_tgt) < threshold(T-FPR)`` at every test FPR, as the paper's
   Average (over pairs and attributes), Best (a pair succeeds when one of its attributes does) and Worst (when
   all do), plus the reference rows of Table C (:func:`reference_rows`: the source ``x0``, ``G(x', c)`` and the
   best ``G(x', c_new)`` before any optimisation);
6. :func:`transfer_rates`: the examples that succeeded at G-FPR, scored on every transfer target (undefended,
   thresholds from its own dev pairs), keyed by the target's unique id (``label`` in its node, else its victim
   name, suffixed ``_<index>`` when two targets share a name); :func:`self_transfer` gives the generating
   model's own column (``self_transfer`` in the results; the table builder labels it
   ``pipeline.victim_label``);
7. :func:`save_pictures`: grids that mark, per pair, at which test FPRs it succeeded.

Metrics: ``attack/asr`` (Average), ``attack/asr_instance`` (Best), ``attack/asr_worst`` (Worst) at G-FPR =
T-FPR = ``fprs[0]``; the same for every pair as ``attack/asr[_instance|_worst]_g<G>_t<T>``;
``attack/asr_<attribute>``; ``attack/ref_source``, ``attack/ref_recon``, ``attack/ref_edit_best`` (Table C's
x0, G(x0, c), G(x0, c_new) (Best), at ``fprs[0]``; ``_t<T>`` for every T-FPR); ``transfer/asr_<id>_g<G>_t<T>``;
``clean/threshold_<FPR>``, ``clean/tar_<FPR>``, ``clean/far_<FPR>``; ``clean/false_accept``; ``attack/iters``
(``_g<G>`` per G-FPR); mean distances to the target ``attack/dist_source``, ``attack/dist_edit[_best]``,
``attack/dist_adv[_best]_g<G>`` (``_best``: the closest attribute per pair);
``defense/detector_clean`` / ``defense/detector_adv`` when the defense has a detector score, and for a 0/1 flag
(``defense=ami``) ``defense/detection_rate`` (flagged share of the successful adversarial examples at the first
G-FPR), ``defense/detection_rate_all`` (of all attacked ones), ``defense/false_positive_rate`` (clean sources).
``results.json`` keeps the full tables under ``semantic_adv`` (read by ``advlab-report --layout semanticadv``).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.semantic_adv import SemanticAdv, SemanticAdvConfig, flip_attributes
from advlab.data.configs import content_key
from advlab.data.faces import FaceAttributeData
from advlab.errors import ConfigError
from advlab.generators.stargan import (
    AttributeGenerator,
    StarGANDiscriminator,
    StarGANGenerator,
    checkpoint_c_dim,
    load_generator_state,
)
from advlab.loops.stargan_fit import fit_stargan
from advlab.pipelines.base import PIPELINES, Pipeline
from advlab.pipelines.configs import (  # noqa: F401  (re-exported for callers of this module)
    TARGET_KEYS,
    GFPRSetting,
    SemanticAdvPipelineConfig,
    StarGANConfig,
    target_ids,
)
from advlab.reporting.pictures import save_image_rows
from advlab.tasks.base import TASKS
from advlab.tasks.verification import Verification, embedding_distance, pair_distances, threshold_at_fpr
from advlab.utils import frozen
from advlab.victims.base import VICTIMS, load_state_dict_file

if TYPE_CHECKING:
    from advlab.context import RunContext

logger = logging.getLogger(__name__)
GENERATOR_CACHE_FORMAT = 1
PIXEL_ATTACKS = ("cw_l2", "mi_fgsm", "di_fgsm", "pgd")


def fpr_tag(fpr: float) -> str:
    return f"{fpr:.0e}".replace("e-0", "e-")


# ---- stage inputs and outputs -------------------------------------------------------------------------------


@dataclasses.dataclass
class Thresholds:
    fprs: list[float]
    values: list[float]  # L2 distances between unit embeddings, one per FPR
    metrics: dict[str, float]

    @property
    def tags(self) -> list[str]:
        return [fpr_tag(f) for f in self.fprs]


@dataclasses.dataclass
class Pairs:
    source: Tensor  # test-image indices [n]
    target: Tensor  # [n]
    source_emb: Tensor  # the victim's embeddings [n, D]
    target_emb: Tensor


@dataclasses.dataclass
class PairOutput:
    """One batch of ``B`` sources attacked with ``K`` edits."""

    x_adv: Tensor  # [B, K, C, H, W]
    iters: Tensor  # [B, K]
    x_recon: Tensor | None = None  # G(x', c) [B, C, H, W] (generator attacks)
    x_edit: Tensor | None = None  # G(x', c_new) [B, K, C, H, W]


@dataclasses.dataclass
class GFPROutcome:
    """Everything the later stages need from the attack at one G-FPR (on the host)."""

    tag: str
    threshold: float
    distances: Tensor  # d(x_adv, x_tgt) [n, K]
    x_adv: Tensor | None  # uint8 [n, K, C, H, W] when kept for transfer
    iters: Tensor  # [n, K]
    l2: Tensor  # ||x_adv - x|| [n, K]
    seconds: float
    reference: ReferenceDistances | None  # the Table C rows (first G-FPR only: they do not depend on it)
    detector: Tensor | None  # the defense's detector score of x_adv [n, K]
    pictures: PairOutput | None  # the first batch, for the grids


@dataclasses.dataclass
class ReferenceDistances:
    source: Tensor  # d(x0, x_tgt) [n]
    recon: Tensor | None  # d(G(x', c), x_tgt) [n]
    edit: Tensor | None  # d(G(x', c_new), x_tgt) [n, K]
    recon_mse: Tensor | None  # MSE(G(x', c), x0) [n]


# ---- generator ------------------------------------------------------------------------------------------


def generator_attributes(params: SemanticAdvPipelineConfig, data_attributes: list[str]) -> list[str]:
    """The generator's attribute list, checked against the dataset's (same count and order)."""
    gen_attrs = params.generator.attributes
    if gen_attrs is not None and list(gen_attrs) != list(data_attributes):
        raise ConfigError(
            f"pipeline.generator.attributes lists {len(gen_attrs)} attributes {list(gen_attrs)} but the dataset "
            f"provides {len(data_attributes)} {list(data_attributes)}; the generator's condition must be the "
            "dataset's attributes in the same order (set dataset.attributes)"
        )
    return list(data_attributes)


def build_generator(params: SemanticAdvPipelineConfig, c_dim: int) -> StarGANGenerator:
    return StarGANGenerator(c_dim, params.generator.conv_dim, params.generator.repeat_num)


def prepare_generator(
    ctx: RunContext, data: FaceAttributeData, params: SemanticAdvPipelineConfig, feature_layer: str
) -> tuple[AttributeGenerator, dict[str, Any]]:
    """Load ``pipeline.generator.checkpoint`` or train the StarGAN (cached by a hash, file-locked, resumable)."""
    spec = ctx.spec
    attrs = generator_attributes(params, data.attribute_names)
    net = build_generator(params, len(attrs))
    gcfg = params.generator
    if gcfg.checkpoint:
        load_generator_state(net, load_state_dict_file(gcfg.checkpoint), gcfg.checkpoint)
        gen = AttributeGenerator(net, feature_layer).to(spec.device).eval()
        return gen, {"source": "checkpoint", "path": gcfg.checkpoint}
    dataset = content_key(spec.dataset)
    key_parts = {
        "format": GENERATOR_CACHE_FORMAT,
        "dataset": dataset,
        "generator": dataclasses.asdict(gcfg),
        "gan_train": {
            k: v
            for k, v in dataclasses.asdict(params.gan_train).items()
            if k not in ("checkpoint_every", "log_every")
        },
        "attributes": attrs,
        "seed": spec.seed,
    }
    cache = ctx.cache
    artifact = cache.artifact("generators", f"{spec.dataset.name}-stargan", key_parts)
    t0 = time.perf_counter()

    def train(resume_path: Path) -> dict[str, Tensor]:
        logger.info(
            f"training StarGAN on {spec.dataset.name} ({len(attrs)} attributes); cache: {artifact.path}"
        )
        h = data.info.image_shape[1]
        disc = StarGANDiscriminator(h, len(attrs), gcfg.d_conv_dim, gcfg.d_repeat_num)
        torch.manual_seed(spec.seed)
        trained = build_generator(params, len(attrs))
        fit_stargan(
            trained, disc, data, params.gan_train, spec.device, spec.seed, resume_path, ctx.recorder.log,
            spec.progress,
        )  # fmt: skip
        return {k: v.cpu() for k, v in trained.state_dict().items()}

    # the StarGAN loop is single-process: under torchrun rank 0 trains, the other ranks wait and load
    weights, cached = cache.load_or_build(artifact, train)
    load_generator_state(net, weights, str(artifact.path))
    info = {"source": "cache" if cached else "trained", "path": str(artifact.path), "key": artifact.key}
    if cached:
        logger.info(f"loaded cached generator {artifact.path} (training skipped)")
    else:
        info["train_time_s"] = round(time.perf_counter() - t0, 2)
    return AttributeGenerator(net, feature_layer).to(spec.device).eval(), info


# ---- stages 2-3: thresholds and pairs ---------------------------------------------------------------------


@torch.no_grad()
def embed(
    model: nn.Module, data: FaceAttributeData, split: str, index: Tensor, device, batch: int = 256
) -> Tensor:
    out = []
    for s in range(0, len(index), batch):
        out.append(model(data.load_images(split, index[s : s + batch]).to(device)).float())
    return torch.cat(out) if out else torch.zeros(0)


def given_thresholds(params: SemanticAdvPipelineConfig) -> list[float] | None:
    """``pipeline.thresholds`` as L2 distances (square roots of squared-distance thresholds)."""
    if params.thresholds is None:
        return None
    if params.threshold_distance == "squared_l2":
        return [math.sqrt(float(t)) for t in params.thresholds]
    return [float(t) for t in params.thresholds]


def choose_thresholds(
    model: nn.Module, data: FaceAttributeData, params: SemanticAdvPipelineConfig, device, seed: int
) -> Thresholds:
    """Distance thresholds at ``params.fprs`` from the dev split's impostor pairs (or the given ones), and
    the model's verification rates there."""
    ids = data.identities("dev")
    emb = embed(model, data, "dev", torch.arange(len(ids)), device)
    genuine, impostor = pair_distances(emb, ids, params.max_dev_pairs, torch.Generator().manual_seed(seed))
    values = given_thresholds(params) or [threshold_at_fpr(impostor, f) for f in params.fprs]
    impostor = impostor.cpu()
    metrics = {"clean/impostor_dist": float(impostor.mean())}
    if genuine.numel():
        metrics["clean/genuine_dist"] = float(genuine.mean())
    for f, t in zip(params.fprs, values):
        metrics[f"clean/threshold_{fpr_tag(f)}"] = t
        metrics[f"clean/tar_{fpr_tag(f)}"] = (
            float((genuine < t).float().mean()) if genuine.numel() else float("nan")
        )
        metrics[f"clean/far_{fpr_tag(f)}"] = float((impostor < t).float().mean())
    return Thresholds(list(params.fprs), values, metrics)


def choose_pairs(data: FaceAttributeData, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` (source, target) test-image indices: sources from distinct identities where possible, each target
    a random image of another identity."""
    ids = data.identities("test")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ids), generator=gen)
    first_of_id: dict[int, int] = {}
    for i in order.tolist():
        first_of_id.setdefault(int(ids[i]), i)
    distinct = torch.tensor(list(first_of_id.values()))
    if len(first_of_id) < 2:
        raise ConfigError("dataset: the test split needs at least two identities to form verification pairs")
    rest = order[~torch.isin(order, distinct)]
    sources = torch.cat([distinct, rest])[:n]
    if len(sources) < n:
        logger.warning(f"pipeline.num_pairs={n} but the test split has only {len(sources)} images")
    targets = torch.empty_like(sources)
    for j, s in enumerate(sources.tolist()):
        others = torch.nonzero(ids != ids[s]).flatten()
        targets[j] = others[torch.randint(len(others), (1,), generator=gen)]
    return sources, targets


def embed_pairs(model: nn.Module, data: FaceAttributeData, n: int, seed: int, device) -> Pairs:
    src, tgt = choose_pairs(data, n, seed)
    return Pairs(src, tgt, embed(model, data, "test", src, device), embed(model, data, "test", tgt, device))


# ---- stage 4: the attack at one G-FPR ---------------------------------------------------------------------


class GeneratorPairAttack:
    """SemanticAdv: each source edited along every attribute of ``attack.attributes``."""

    def __init__(self, params: SemanticAdvConfig, generator: AttributeGenerator, names: list[str]):
        self.params, self.generator = params, generator
        self.attr_idx = SemanticAdv(params, None).attribute_indices(names)  # type: ignore[arg-type]
        self.attribute_names = [names[i] for i in self.attr_idx]

    def run(self, model: nn.Module, task: Verification, setting: dict, x, c, src_emb, tgt_emb) -> PairOutput:
        attack = SemanticAdv(dataclasses.replace(self.params, **setting), task)
        res = attack.run(model, self.generator, x, c, src_emb, tgt_emb, self.attr_idx)
        return PairOutput(res.x_adv, res.iters, res.x_recon, res.x_edit)


class PixelPairAttack:
    """A pixel attack (C&W, MI-FGSM, M-DI2-FGSM, ...) on the source (one "attribute", ``pixel``), or, for the
    StrawMan, on ``G(x', c_new)`` of every attribute (the generator's edit, then the pixel attack)."""

    def __init__(self, params: Any, strawman: tuple[AttributeGenerator, list[str], int] | None = None):
        self.params, self.strawman = params, strawman
        self.attribute_names = ["pixel"] if strawman is None else list(strawman[1])

    def run(self, model: nn.Module, task: Verification, setting: dict, x, c, src_emb, tgt_emb) -> PairOutput:
        attack: Attack = ATTACKS.build(dataclasses.replace(self.params, **setting), task)
        if self.strawman is None:
            x_adv = attack(model, x, src_emb, tgt_emb)
            it = attack.batch_stats.get("iters", torch.zeros(x.shape[0], device=x.device))
            return PairOutput(x_adv[:, None], it[:, None])
        generator, names, recon_steps = self.strawman
        k = len(names)
        pre = SemanticAdv(SemanticAdvConfig(recon_steps=recon_steps), task)
        with frozen(generator):
            x_in = pre.reconstruct(generator, x, c) if recon_steps else x
        with torch.no_grad():
            x_recon = generator(x_in, c)
            c_new = flip_attributes(c, torch.arange(k, device=x.device))
            x_new = generator(x_in.repeat_interleave(k, dim=0), c_new)
        rep = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731
        x_adv = attack(model, x_new, rep(src_emb), rep(tgt_emb))
        it = attack.batch_stats.get("iters", torch.zeros(x_new.shape[0], device=x.device))
        shape = (x.shape[0], k, *x.shape[1:])
        return PairOutput(x_adv.view(shape), it.view(x.shape[0], k), x_recon, x_new.view(shape))


def setting_for(params: SemanticAdvPipelineConfig, fpr: float) -> dict[str, Any]:
    """The attack fields to override at this G-FPR (``pipeline.per_fpr``)."""
    for s in params.per_fpr:
        if math.isclose(s.fpr, fpr):
            return {k: v for k, v in (("steps", s.steps), ("lr", s.lr)) if v is not None}
    return {}


def attack_at_gfpr(
    pair_attack: GeneratorPairAttack | PixelPairAttack,
    attacked: nn.Module,
    scored: nn.Module,
    task: Verification,
    setting: dict[str, Any],
    data: FaceAttributeData,
    pairs: Pairs,
    tag: str,
    batch_size: int,
    device,
    keep_images: bool,
    with_reference: bool,
    detector=None,
) -> GFPROutcome:
    """Attack every pair at ``task.threshold`` (the G-FPR's); distances are measured on ``scored`` (the
    defended model)."""
    n, k = len(pairs.source), len(pair_attack.attribute_names)
    shape = data.info.image_shape
    d = torch.zeros(n, k)
    iters, l2 = torch.zeros(n, k), torch.zeros(n, k)
    kept = torch.zeros(n, k, *shape, dtype=torch.uint8) if keep_images else None
    ref = ReferenceDistances(torch.zeros(n), None, None, None) if with_reference else None
    det = torch.zeros(n, k) if detector is not None else None
    first: PairOutput | None = None
    seconds = 0.0
    for s in range(0, n, batch_size):
        sl = slice(s, min(s + batch_size, n))
        x = data.load_images("test", pairs.source[sl]).to(device)
        c = data.attributes("test")[pairs.source[sl]].to(device)
        tgt = pairs.target_emb[sl]
        t0 = time.perf_counter()
        out = pair_attack.run(attacked, task, setting, x, c, pairs.source_emb[sl], tgt)
        seconds += time.perf_counter() - t0
        with torch.no_grad():
            rows = out.x_adv.flatten(0, 1)
            d[sl] = embedding_distance(scored(rows), tgt.repeat_interleave(k, dim=0)).view(-1, k).cpu()
            iters[sl] = out.iters.float().cpu()
            l2[sl] = (out.x_adv - x[:, None]).flatten(2).norm(dim=2).cpu()
            if det is not None:
                det[sl] = detector(scored_victim(scored), rows).view(-1, k).cpu()
            if kept is not None:
                kept[sl] = (out.x_adv * 255).round().clamp(0, 255).to(torch.uint8).cpu()
            if ref is not None:
                fill_reference(ref, sl, scored, x, out, tgt, n, k)
        if first is None:
            first = PairOutput(out.x_adv.cpu(), out.iters.cpu(), None, None)
            first.x_edit = None if out.x_edit is None else out.x_edit.cpu()
    return GFPROutcome(tag, task.threshold, d, kept, iters, l2, seconds, ref, det, first)


def scored_victim(scored: nn.Module) -> nn.Module:
    """The victim inside a defended model (the detector compares the victim on x and on squeezed x)."""
    return getattr(scored, "victim", scored)


def fill_reference(
    ref: ReferenceDistances, sl: slice, scored, x, out: PairOutput, tgt, n: int, k: int
) -> None:
    ref.source[sl] = embedding_distance(scored(x), tgt).cpu()
    if out.x_recon is not None:
        if ref.recon is None:
            ref.recon, ref.recon_mse = torch.zeros(n), torch.zeros(n)
        ref.recon[sl] = embedding_distance(scored(out.x_recon), tgt).cpu()
        ref.recon_mse[sl] = (out.x_recon - x).pow(2).flatten(1).mean(1).cpu()
    if out.x_edit is not None:
        if ref.edit is None:
            ref.edit = torch.zeros(n, k)
        rows = out.x_edit.flatten(0, 1)
        ref.edit[sl] = embedding_distance(scored(rows), tgt.repeat_interleave(k, dim=0)).view(-1, k).cpu()


def detection_rates(outcome: GFPROutcome, flagged_clean: float) -> dict[str, float]:
    """For a detector whose score is a 0/1 flag (AMI): the share of the *successful* adversarial examples at
    the first G-FPR that it flags, of all attacked ones, and of the clean sources (false positives)."""
    flags = outcome.detector
    ok = outcome.distances < outcome.threshold
    return {
        "defense/detection_rate": float(flags[ok].mean()) if ok.any() else float("nan"),
        "defense/detection_rate_all": float(flags.mean()),
        "defense/false_positive_rate": flagged_clean,
    }


# ---- stage 5: scores at every T-FPR ------------------------------------------------------------------------


def success_rates(ok: Tensor) -> dict[str, float]:
    """``ok`` [n, K] (pair x attribute): the paper's Average, Best and Worst."""
    return {
        "average": float(ok.float().mean()),
        "best": float(ok.any(dim=1).float().mean()),
        "worst": float(ok.all(dim=1).float().mean()),
    }


def score_at_tfprs(outcome: GFPROutcome, thresholds: Thresholds) -> dict[str, dict[str, float]]:
    """``{T-FPR tag: {average, best, worst}}`` for one G-FPR."""
    return {t: success_rates(outcome.distances < thr) for t, thr in zip(thresholds.tags, thresholds.values)}


def reference_rows(ref: ReferenceDistances, thresholds: Thresholds) -> dict[str, dict[str, float]]:
    """Table C's rows before optimisation: ``{T-FPR tag: {source, recon, edit_best}}`` (ASR of the source x0,
    of G(x', c) and of the best attribute edit G(x', c_new))."""
    out = {}
    for t, thr in zip(thresholds.tags, thresholds.values):
        row = {"source": float((ref.source < thr).float().mean())}
        if ref.recon is not None:
            row["recon"] = float((ref.recon < thr).float().mean())
        if ref.edit is not None:
            row["edit_best"] = float((ref.edit < thr).any(dim=1).float().mean())
        out[t] = row
    return out


# ---- stage 6: transfer --------------------------------------------------------------------------------------


def transfer_rates(
    outcomes: list[GFPROutcome], other: nn.Module, other_thresholds: Thresholds, target_emb: Tensor, device
) -> dict[str, dict[str, float]]:
    """Share of the examples that succeeded at each G-FPR (on the generating model) that ``other`` accepts as
    the target at each of its T-FPR thresholds: ``{G tag: {T tag: rate}}``."""
    table: dict[str, dict[str, float]] = {}
    for o in outcomes:
        ok_src = o.distances < o.threshold
        rows = torch.nonzero(ok_src)[:, 0]
        x = o.x_adv[ok_src] if o.x_adv is not None else torch.zeros(0)
        with torch.no_grad():
            emb = [other(x[i : i + 256].to(device).float() / 255) for i in range(0, len(x), 256)]
        table[o.tag] = {}
        for t, thr in zip(other_thresholds.tags, other_thresholds.values):
            if not emb:
                table[o.tag][t] = float("nan")
                continue
            d = embedding_distance(torch.cat(emb), target_emb[rows.to(target_emb.device)])
            table[o.tag][t] = float((d < thr).float().mean())
    return table


def self_transfer(outcomes: list[GFPROutcome], thresholds: Thresholds) -> dict[str, dict[str, float]]:
    """The generating model's own column: of the examples that succeeded at G-FPR, the share below each T-FPR
    threshold (1 where T-FPR >= G-FPR)."""
    table: dict[str, dict[str, float]] = {}
    for o in outcomes:
        ok_src = o.distances < o.threshold
        table[o.tag] = {
            t: float((o.distances[ok_src] < thr).float().mean()) if ok_src.any() else float("nan")
            for t, thr in zip(thresholds.tags, thresholds.values)
        }
    return table


# ---- stage 7: pictures ------------------------------------------------------------------------------------


def success_marks(d: Tensor, thresholds: Thresholds) -> list[str]:
    """Per distance: which test FPRs accept it, e.g. ``T1e-3 yes | T1e-4 no``."""
    return [
        " | ".join(
            f"T{t} {'yes' if float(v) < thr else 'no'}" for t, thr in zip(thresholds.tags, thresholds.values)
        )
        for v in d.flatten()
    ]


def save_pictures(
    ctx: RunContext,
    data: FaceAttributeData,
    pairs: Pairs,
    outcome: GFPROutcome,
    attr_names: list[str],
    thresholds: Thresholds,
    examples: int,
) -> list[Path]:
    """Pairs grid (source / target / G(x', c_new) / adversarial, the attribute that came closest per pair) and,
    for generator attacks, one source with every attribute; titles mark the T-FPRs each example passes
    (green: accepted at the G-FPR threshold)."""
    first = outcome.pictures
    if first is None or not examples:
        return []
    m = min(examples, first.x_adv.shape[0])
    x = data.load_images("test", pairs.source[:m])
    targets = data.load_images("test", pairs.target[:m])
    d = outcome.distances[:m]
    best = d.argmin(dim=1)
    cols = torch.arange(m)
    d_best = d[cols, best]
    marks = success_marks(d_best, thresholds)
    titles = [
        (f"{attr_names[int(best[j])]} d={float(d_best[j]):.2f}\n{marks[j]}",
         "green" if float(d_best[j]) < outcome.threshold else "red")
        for j in range(m)
    ]  # fmt: skip
    rows = [("source", x), ("target", targets)]
    if first.x_edit is not None:
        rows.append(("G(x', c_new)", first.x_edit[cols, best]))
    rows.append(("adversarial", first.x_adv[cols, best]))
    paths = [save_image_rows(rows, titles, ctx.run_dir / f"semanticadv_pairs_g{outcome.tag}.png")]
    ctx.recorder.image(
        f"examples_pairs_g{outcome.tag}",
        paths[0],
        caption=f"G-FPR {outcome.tag}, threshold {outcome.threshold:.3f}",
    )
    if first.x_edit is not None and len(attr_names) > 1:
        k = len(attr_names)
        c = data.attributes("test")[pairs.source[:1]]
        idx = [data.attribute_names.index(a) for a in attr_names]
        marks = success_marks(outcome.distances[0], thresholds)
        titles = [
            (f"{'-' if c[0, i] > 0.5 else '+'}{a} d={float(outcome.distances[0, j]):.2f}\n{marks[j]}",
             "green" if float(outcome.distances[0, j]) < outcome.threshold else "red")
            for j, (i, a) in enumerate(zip(idx, attr_names))
        ]  # fmt: skip
        rows = [
            ("source", x[:1].expand(k, -1, -1, -1)),
            ("G(x', c_new)", first.x_edit[0]),
            ("adversarial", first.x_adv[0]),
        ]
        paths.append(
            save_image_rows(rows, titles, ctx.run_dir / f"semanticadv_attributes_g{outcome.tag}.png")
        )
        ctx.recorder.image(
            f"examples_attributes_g{outcome.tag}", paths[-1], caption=f"every attribute, G-FPR {outcome.tag}"
        )
    return paths


# ---- the pipeline -----------------------------------------------------------------------------------------


def metrics_of(
    outcomes: list[GFPROutcome],
    scores: dict[str, dict[str, dict[str, float]]],
    reference: dict[str, dict[str, float]],
    thresholds: Thresholds,
    attr_names: list[str],
) -> dict[str, float]:
    m: dict[str, float] = {}
    for g, per_t in scores.items():
        for t, s in per_t.items():
            m[f"attack/asr_g{g}_t{t}"] = s["average"]
            m[f"attack/asr_instance_g{g}_t{t}"] = s["best"]
            m[f"attack/asr_worst_g{g}_t{t}"] = s["worst"]
    main = thresholds.tags[0]
    m["attack/asr"] = scores[main][main]["average"]
    m["attack/asr_instance"] = scores[main][main]["best"]
    m["attack/asr_worst"] = scores[main][main]["worst"]
    if attr_names != ["pixel"]:
        ok = outcomes[0].distances < thresholds.values[0]
        for j, a in enumerate(attr_names):
            m[f"attack/asr_{a}"] = float(ok[:, j].float().mean())
    for t, row in reference.items():
        for name, v in row.items():
            m[f"attack/ref_{name}_t{t}"] = v
    for name, v in reference.get(main, {}).items():
        m[f"attack/ref_{name}"] = v
    m["clean/false_accept"] = reference[main]["source"]
    n_att = sum(o.distances.numel() for o in outcomes)
    m["attack/iters"] = float(torch.cat([o.iters.flatten() for o in outcomes]).mean())
    for o in outcomes:
        m[f"attack/iters_g{o.tag}"] = float(o.iters.mean())
    m["attack/time_per_image_s"] = sum(o.seconds for o in outcomes) / max(n_att, 1)
    m["attack/l2_to_source"] = float(outcomes[0].l2.mean())
    ref0 = outcomes[0].reference
    if ref0 is not None and ref0.recon_mse is not None:
        m["attack/recon_mse"] = float(ref0.recon_mse.mean())
    # mean distances to the target (how far the attack moved the embedding, against the thresholds)
    for o in outcomes:
        m[f"attack/dist_adv_g{o.tag}"] = float(o.distances.mean())
        m[f"attack/dist_adv_best_g{o.tag}"] = float(o.distances.min(dim=1).values.mean())
    if ref0 is not None:
        m["attack/dist_source"] = float(ref0.source.mean())
        if ref0.edit is not None:
            m["attack/dist_edit"] = float(ref0.edit.mean())
            m["attack/dist_edit_best"] = float(ref0.edit.min(dim=1).values.mean())
    if outcomes[0].detector is not None:
        m["defense/detector_adv"] = float(outcomes[0].detector.mean())
    return m


def result_tables(
    outcomes: list[GFPROutcome],
    scores: dict[str, dict[str, dict[str, float]]],
    reference: dict[str, dict[str, float]],
    thresholds: Thresholds,
    attr_names: list[str],
) -> dict[str, Any]:
    """The full G-FPR x T-FPR tables kept in ``results.json`` (read by ``advlab-report --layout semanticadv``)."""
    pick = lambda k: {g: {t: s[k] for t, s in per.items()} for g, per in scores.items()}  # noqa: E731
    return {
        "fprs": list(thresholds.fprs),
        "thresholds": thresholds.values,
        "attributes": attr_names,
        "asr": pick("average"),
        "asr_instance": pick("best"),
        "asr_worst": pick("worst"),
        "asr_per_attribute": {
            a: {
                f"g{o.tag}_t{t}": float((o.distances[:, j] < thr).float().mean())
                for o in outcomes
                for t, thr in zip(thresholds.tags, thresholds.values)
            }
            for j, a in enumerate(attr_names)
        },
        "reference": reference,
        "self_transfer": self_transfer(outcomes, thresholds),
    }


@PIPELINES.register("semantic_adv")
class SemanticAdvPipeline(Pipeline):
    Config = SemanticAdvPipelineConfig

    def check(self, ctx: RunContext) -> None:
        spec, p = ctx.spec, self.params
        from advlab.data.base import DATASETS

        data_cls = DATASETS.get(spec.dataset.name)
        if not issubclass(data_cls, FaceAttributeData):
            raise ConfigError(
                f"pipeline=semantic_adv needs a face dataset with identities and attributes "
                f"(celeba, synthfaces), got dataset={spec.dataset.name}"
            )
        if spec.task.name != "verification":
            raise ConfigError(f"pipeline=semantic_adv needs task=verification (got {spec.task.name})")
        if spec.attack.name != "semantic_adv" and spec.attack.name not in PIXEL_ATTACKS:
            raise ConfigError(
                f"pipeline=semantic_adv runs attack=semantic_adv or a pixel attack ({', '.join(PIXEL_ATTACKS)}), "
                f"got {spec.attack.name}"
            )
        if not getattr(spec.attack, "targeted", False):
            raise ConfigError(
                "attack.targeted: the SemanticAdv verification experiment attacks towards target identities; "
                "set it to true"
            )
        for s in p.per_fpr:
            for field in ("steps", "lr"):
                if getattr(s, field) is not None and not hasattr(spec.attack, field):
                    raise ConfigError(
                        f"pipeline.per_fpr: sets '{field}' but attack={spec.attack.name} has no attack.{field}"
                    )
        for node_key, vspec in [("victim", spec.victim)] + [
            (f"pipeline.transfer_victims[{i}]", target_spec(ctx, v, i).victim)
            for i, v in enumerate(p.transfer_victims)
        ]:
            if not VICTIMS.get(vspec.name).trainable and not vspec.checkpoint:
                raise ConfigError(
                    f"{node_key}: '{vspec.name}' is not trained by advlab; set {node_key}.checkpoint to its local "
                    "weights"
                )
        if spec.attack.name == "semantic_adv" or p.strawman:
            data_attrs = data_cls.configured_attributes(spec.dataset)
            generator_attributes(p, data_attrs)
            layer = getattr(spec.attack, "feature_layer", "last_res")
            StarGANGenerator(1, 4, p.generator.repeat_num).split_index(layer)
            if p.generator.checkpoint:
                c_file = checkpoint_c_dim(load_state_dict_file(p.generator.checkpoint))
                if c_file != len(data_attrs):
                    raise ConfigError(
                        f"pipeline.generator.checkpoint '{p.generator.checkpoint}' was trained with {c_file} "
                        f"attributes but the dataset provides {len(data_attrs)} ({', '.join(data_attrs)}); set "
                        "dataset.attributes to the generator's attributes, in its order"
                    )
            else:
                h = data_cls.configured_image_size(spec.dataset)
                if h % 2**p.generator.d_repeat_num:
                    raise ConfigError(
                        f"pipeline.generator.d_repeat_num: image size {h} is not divisible by 2^{p.generator.d_repeat_num}"
                    )
        if p.strawman and spec.attack.name == "semantic_adv":
            raise ConfigError(
                "pipeline.strawman: the StrawMan runs a pixel attack (attack=cw_l2) on G(x', c_new)"
            )

    def pair_attack(
        self, ctx: RunContext, data: FaceAttributeData, extra: dict
    ) -> GeneratorPairAttack | PixelPairAttack:
        """The attack adapter of the config (generator-based or pixel), built once."""
        spec, p = ctx.spec, self.params
        if spec.attack.name == "semantic_adv" or p.strawman:
            layer = getattr(spec.attack, "feature_layer", "last_res")
            generator, extra["generator"] = prepare_generator(ctx, data, p, layer)
            if p.strawman:
                return PixelPairAttack(spec.attack, (generator, data.attribute_names, p.strawman_recon_steps))
            return GeneratorPairAttack(spec.attack, generator, data.attribute_names)
        return PixelPairAttack(spec.attack)

    def run(self, ctx: RunContext) -> tuple[dict[str, float], dict[str, Any]]:
        spec, p = ctx.spec, self.params
        parts = ctx.build()
        data: FaceAttributeData = parts.data  # type: ignore[assignment]
        task: Verification = parts.task  # type: ignore[assignment]
        victim, victim_info = ctx.prepare_victim(parts)
        victim = victim.to(spec.device).eval()
        defense_info = parts.defense.prepare(victim, data, spec.device)  # e.g. AMI's witnesses
        scored = parts.defense.wrap(victim).to(spec.device).eval()
        attacked = scored if p.adaptive else victim
        thresholds = choose_thresholds(scored, data, p, spec.device, spec.seed)
        logger.info(
            "thresholds: " + ", ".join(f"FPR {f:g} -> {t:.4f}" for f, t in zip(p.fprs, thresholds.values))
        )
        ctx.recorder.log(thresholds.metrics)
        pairs = embed_pairs(scored, data, p.num_pairs, p.pair_seed, spec.device)
        extra: dict[str, Any] = {"victim": {"name": spec.victim.name, **victim_info}}
        pair_attack = self.pair_attack(ctx, data, extra)
        # e.g. feature squeezing's L1 score, AMI's flag (deciding at the first FPR's threshold)
        defense = parts.defense.for_task(task.at_threshold(thresholds.values[0]))
        detector = getattr(defense, "detector", None)
        outcomes = [
            attack_at_gfpr(
                pair_attack, attacked, scored, task.at_threshold(thr), setting_for(p, f), data, pairs, g,
                p.batch_size, spec.device, keep_images=bool(p.transfer_victims), with_reference=(i == 0),
                detector=detector if i == 0 else None,
            )
            for i, (f, g, thr) in enumerate(zip(p.fprs, thresholds.tags, thresholds.values))
        ]  # fmt: skip
        scores = {o.tag: score_at_tfprs(o, thresholds) for o in outcomes}
        reference = reference_rows(outcomes[0].reference, thresholds)  # type: ignore[arg-type]
        names = pair_attack.attribute_names
        metrics = {**thresholds.metrics, **metrics_of(outcomes, scores, reference, thresholds, names)}
        if detector is not None:
            x0 = data.load_images("test", pairs.source).to(spec.device)
            with torch.no_grad():
                metrics["defense/detector_clean"] = float(detector(victim, x0).mean())
            if getattr(defense, "detector_flags", False):  # a 0/1 flag: rates
                metrics.update(detection_rates(outcomes[0], metrics["defense/detector_clean"]))
        if defense_info is not None:
            extra["defense"] = {"name": spec.defense.name, **defense_info}
        transfer = self.transfer(ctx, parts, outcomes, thresholds, pairs, metrics)
        for o in outcomes:
            save_pictures(ctx, data, pairs, o, names, thresholds, p.grid_examples)
        extra["semantic_adv"] = {
            "interpolation": getattr(spec.attack, "interpolation", None),
            "attack": spec.attack.name + ("+strawman" if p.strawman else ""),
            "victim_label": p.victim_label or spec.victim.name,
            "defense": spec.defense.name,
            "settings": {g: setting_for(p, f) for f, g in zip(p.fprs, thresholds.tags)},
            **result_tables(outcomes, scores, reference, thresholds, names),
            "num_pairs": len(pairs.source),
            "transfer": transfer,
        }
        ctx.recorder.log(metrics)
        return metrics, extra

    def transfer(self, ctx, parts, outcomes, thresholds: Thresholds, pairs: Pairs, metrics) -> dict[str, Any]:
        """Every transfer target (undefended), keyed by its unique id, with its own embedding size and
        thresholds (:func:`target_spec`, :func:`target_thresholds`)."""
        p, spec = self.params, ctx.spec
        if not p.transfer_victims:
            return {}
        data: FaceAttributeData = parts.data
        out: dict[str, Any] = {}
        for i, (tid, node) in enumerate(zip(target_ids(p.transfer_victims), p.transfer_victims)):
            sub = target_spec(ctx, node, i)
            target_task = TASKS.build(sub.task, data.info)  # the target's own embedding size
            other, _ = ctx.prepare_victim(dataclasses.replace(parts, task=target_task), sub)
            other = other.to(spec.device).eval()  # targets are scored without the defense
            other_thr = target_thresholds(other, data, p, node, spec.device, spec.seed)
            tgt = embed(other, data, "test", pairs.target, spec.device)
            table = transfer_rates(outcomes, other, other_thr, tgt, spec.device)
            for g, per_t in table.items():
                for t, v in per_t.items():
                    metrics[f"transfer/asr_{tid}_g{g}_t{t}"] = v
            out[tid] = {
                "victim": sub.victim.name,
                "embedding_dim": sub.task.embedding_dim,
                "thresholds": other_thr.values,
                "thresholds_given": node.get("thresholds") is not None,
                "asr": table,
            }
        return out


def target_spec(ctx: RunContext, node: Any, index: int):
    """The run's spec with the victim *replaced* by a transfer target's node: the target's own keys and
    defaults, nothing inherited from the run's victim node. The node's pipeline keys (``label``,
    ``embedding_dim``, ``thresholds``; :data:`TARGET_KEYS`) are not victim keys; ``embedding_dim`` sets the
    target's ``task.embedding_dim`` (e.g. the released 256-d R-101-S generating, 512-d ResNet-50s as targets)."""
    node = dict(node)
    nodes: dict[str, Any] = {"victim": {k: v for k, v in node.items() if k not in TARGET_KEYS}}
    if node.get("embedding_dim") is not None:
        nodes["task"] = {"embedding_dim": int(node["embedding_dim"])}
    return ctx.spec_with(**nodes)


def target_thresholds(
    model: nn.Module, data: FaceAttributeData, params: SemanticAdvPipelineConfig, node: Any, device, seed: int
) -> Thresholds:
    """A transfer target's thresholds at ``pipeline.fprs``: its node's ``thresholds`` (in the unit of
    ``pipeline.threshold_distance``) or chosen on *its own* dev impostor pairs, never the generating model's
    given ones (``pipeline.thresholds`` belong to the run's victim, e.g. Table B's R-101-S column)."""
    own = dataclasses.replace(params, thresholds=node.get("thresholds"))
    return choose_thresholds(model, data, own, device, seed)
