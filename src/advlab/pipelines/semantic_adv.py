"""``pipeline=semantic_adv``: SemanticAdv's face-verification experiment (and its C&W baseline).

1. victim: the identity-embedding model (trained by the fit loop on the training identities and cached, or
   loaded from ``victim.checkpoint``);
2. thresholds: L2-normalised embedding distances of all (or ``max_dev_pairs`` random) impostor pairs of the
   ``dev`` split give the distance threshold at each FPR of ``pipeline.fprs`` (or ``pipeline.thresholds``);
3. generator (``attack=semantic_adv``): a StarGAN from ``pipeline.generator.checkpoint`` or trained by
   :func:`advlab.loops.stargan_fit.fit_stargan` (cached under ``cache_dir/generators`` by a hash of everything
   that determines it, resumable);
4. pairs: ``num_pairs`` source images of distinct test identities, each with a target image of another
   identity (seeded);
5. attack at every generating FPR (G-FPR: the threshold in the loss), every attribute of ``attack.attributes``
   separately; then success at every test FPR (T-FPR): ``d(x_adv, x_tgt) < threshold(T-FPR)``.

Metrics: ``attack/asr`` (G-FPR = T-FPR = ``fprs[0]``, averaged over pairs and attributes), ``attack/asr_instance``
(an instance succeeds when any of its attribute attacks does), ``attack/asr_g<G>_t<T>`` and
``attack/asr_instance_g<G>_t<T>`` for every pair of FPRs, ``attack/asr_<attribute>`` per attribute,
``transfer/asr_<victim>_g<G>_t<T>`` (share of the successful examples that also fool another victim),
``clean/tar_<FPR>`` / ``clean/far_<FPR>`` (the victim's verification quality on dev), ``clean/false_accept``
(sources accepted as their target before the attack). ``results.json`` keeps the full tables under
``semantic_adv`` (read by ``scripts/semanticadv_tables.py``); PNG grids show source / target / G(x, c_new) /
adversarial.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from advlab.attacks.semantic_adv import SemanticAdv
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
from advlab.pipelines.configs import SemanticAdvPipelineConfig, StarGANConfig  # noqa: F401
from advlab.tasks.verification import Verification, embedding_distance, pair_distances, threshold_at_fpr
from advlab.victims.base import VICTIMS, load_state_dict_file

if TYPE_CHECKING:
    from advlab.context import RunContext

logger = logging.getLogger(__name__)
GENERATOR_CACHE_FORMAT = 1


def fpr_tag(fpr: float) -> str:
    return f"{fpr:.0e}".replace("e-0", "e-")


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
    dataset = dataclasses.asdict(spec.dataset)
    dataset.pop("root", None)
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
            trained, disc, data, params.gan_train, spec.device, spec.seed, resume_path, ctx.recorder.log
        )
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


@torch.no_grad()
def embed(
    model: torch.nn.Module, data: FaceAttributeData, split: str, index: Tensor, device, batch: int = 256
) -> Tensor:
    out = []
    for s in range(0, len(index), batch):
        out.append(model(data.load_images(split, index[s : s + batch]).to(device)).float())
    return torch.cat(out) if out else torch.zeros(0)


def choose_thresholds(
    model: torch.nn.Module, data: FaceAttributeData, params: SemanticAdvPipelineConfig, device, seed: int
) -> tuple[list[float], dict[str, float]]:
    """Distance thresholds at ``params.fprs`` from the dev split's impostor pairs (or the given ones), and
    the victim's verification rates there."""
    ids = data.identities("dev")
    emb = embed(model, data, "dev", torch.arange(len(ids)), device)
    genuine, impostor = pair_distances(emb, ids, params.max_dev_pairs, torch.Generator().manual_seed(seed))
    if params.thresholds is not None:
        thresholds = [float(t) for t in params.thresholds]
    else:
        thresholds = [threshold_at_fpr(impostor, f) for f in params.fprs]
    metrics = {}
    for f, t in zip(params.fprs, thresholds):
        metrics[f"clean/threshold_{fpr_tag(f)}"] = t
        metrics[f"clean/tar_{fpr_tag(f)}"] = (
            float((genuine < t).float().mean()) if genuine.numel() else float("nan")
        )
        metrics[f"clean/far_{fpr_tag(f)}"] = float((impostor.cpu() < t).float().mean())
    return thresholds, metrics


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


def _save_grid(rows: list[tuple[str, Tensor]], titles: list[str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = rows[0][1].shape[0]
    fig, axes = plt.subplots(len(rows), k, figsize=(1.5 * k, 1.6 * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for j in range(k):
            ax = axes[r, j]
            ax.imshow(imgs[j].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=7)
            if r == 0:
                ax.set_title(titles[j], fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@PIPELINES.register("semantic_adv")
class SemanticAdvPipeline(Pipeline):
    Config = SemanticAdvPipelineConfig

    def check(self, ctx: RunContext) -> None:
        spec, p = ctx.spec, self.params
        from advlab.data.base import DATASETS

        if not issubclass(DATASETS.get(spec.dataset.name), FaceAttributeData):
            raise ConfigError(
                f"pipeline=semantic_adv needs a face dataset with identities and attributes "
                f"(celeba, synthfaces), got dataset={spec.dataset.name}"
            )
        if spec.task.name != "verification":
            raise ConfigError(f"pipeline=semantic_adv needs task=verification (got {spec.task.name})")
        if spec.attack.name not in ("semantic_adv", "cw_l2"):
            raise ConfigError(
                f"pipeline=semantic_adv runs attack=semantic_adv or attack=cw_l2 (got {spec.attack.name})"
            )
        if spec.attack.name == "cw_l2" and not spec.attack.targeted:
            raise ConfigError(
                "attack.targeted: the SemanticAdv verification experiment is targeted; set it to true"
            )
        if spec.attack.name == "semantic_adv" and not spec.attack.targeted:
            raise ConfigError(
                "attack.targeted: pipeline=semantic_adv attacks towards target identities; set true"
            )
        for node_key, vspec in [("victim", spec.victim)] + [
            (f"pipeline.transfer_victims[{i}]", ctx.spec_with(victim=v).victim)
            for i, v in enumerate(p.transfer_victims)
        ]:
            if not VICTIMS.get(vspec.name).trainable and not vspec.checkpoint:
                raise ConfigError(
                    f"{node_key}: '{vspec.name}' is not trained by advlab; set {node_key}.checkpoint to its local "
                    "weights (a state_dict file)"
                )
        if spec.attack.name == "semantic_adv":
            data_attrs = _dataset_attributes(spec)
            if data_attrs is not None:
                generator_attributes(p, data_attrs)
            StarGANGenerator(1, 4, p.generator.repeat_num).split_index(spec.attack.feature_layer)
            if p.generator.checkpoint:
                state = load_state_dict_file(p.generator.checkpoint)
                c_file = checkpoint_c_dim(state)
                if data_attrs is not None and c_file != len(data_attrs):
                    raise ConfigError(
                        f"pipeline.generator.checkpoint '{p.generator.checkpoint}' was trained with {c_file} "
                        f"attributes but the dataset provides {len(data_attrs)} ({', '.join(data_attrs)}); set "
                        "dataset.attributes to the generator's attributes, in its order"
                    )
            else:
                h = _dataset_size(spec)
                if h is not None and h % 2**p.generator.d_repeat_num:
                    raise ConfigError(
                        f"pipeline.generator.d_repeat_num: image size {h} is not divisible by 2^{p.generator.d_repeat_num}"
                    )

    def run(self, ctx: RunContext) -> tuple[dict[str, float], dict[str, Any]]:
        spec, p = ctx.spec, self.params
        parts = ctx.build()
        data: FaceAttributeData = parts.data  # type: ignore[assignment]
        task: Verification = parts.task  # type: ignore[assignment]
        victim, victim_info = ctx.prepare_victim(parts)
        model = victim.to(spec.device).eval()
        thresholds, metrics = choose_thresholds(model, data, p, spec.device, spec.seed)
        logger.info("thresholds: " + ", ".join(f"FPR {f:g} -> {t:.4f}" for f, t in zip(p.fprs, thresholds)))
        ctx.recorder.log(metrics)
        src_idx, tgt_idx = choose_pairs(data, p.num_pairs, p.pair_seed)
        n = len(src_idx)
        tgt_emb = embed(model, data, "test", tgt_idx, spec.device)
        src_emb = embed(model, data, "test", src_idx, spec.device)
        clean_d = embedding_distance(src_emb, tgt_emb)
        metrics["clean/false_accept"] = float((clean_d < thresholds[0]).float().mean())
        attack = parts.attack
        extra: dict[str, Any] = {"victim": {"name": spec.victim.name, **victim_info}}
        if isinstance(attack, SemanticAdv):
            names = data.attribute_names
            generator, gen_info = prepare_generator(ctx, data, p, attack.params.feature_layer)
            extra["generator"] = gen_info
            attr_idx = attack.attribute_indices(names)
            attr_names = [names[i] for i in attr_idx]
        else:
            generator, attr_idx, attr_names = None, [0], ["pixel"]
        k = len(attr_idx)
        tags = [fpr_tag(f) for f in p.fprs]
        asr: dict[str, dict[str, float]] = {}
        asr_inst: dict[str, dict[str, float]] = {}
        per_attr: dict[str, dict[str, float]] = {a: {} for a in attr_names}
        adv_sets: dict[str, Tensor] = {}
        dists: dict[str, Tensor] = {}
        iters_all, t_attack, recon_err = [], 0.0, []
        keep = bool(
            p.transfer_victims
        )  # adversarial images are kept (8-bit, as saved files) only for transfer
        l2_main = []
        for g, (g_tag, g_thr) in enumerate(zip(tags, thresholds)):
            task.threshold = g_thr
            x_adv_all = torch.zeros(n, k, *data.info.image_shape, dtype=torch.uint8) if keep else None
            d = torch.zeros(n, k)
            grid_src = None
            for s in range(0, n, p.batch_size):
                sl = slice(s, min(s + p.batch_size, n))
                x = data.load_images("test", src_idx[sl]).to(spec.device)
                tgt = tgt_emb[sl]
                t0 = time.perf_counter()
                if generator is not None:
                    c = data.attributes("test")[src_idx[sl]].to(spec.device)
                    res = attack.run(model, generator, x, c, src_emb[sl], tgt, attr_idx)
                    x_adv, it = res.x_adv, res.iters
                    recon_err.append((res.x_recon - x).pow(2).flatten(1).mean(1).cpu())
                    if grid_src is None:
                        grid_src = (x.cpu(), res.x_edit.cpu(), res.x_adv.cpu(), c.cpu(), sl)
                else:
                    x_adv = attack(model, x, src_emb[sl], tgt)[:, None]
                    it = attack.batch_stats.get("iters", torch.zeros(x.shape[0]))[:, None]
                    if grid_src is None:
                        grid_src = (x.cpu(), None, x_adv.cpu(), None, sl)
                t_attack += time.perf_counter() - t0
                iters_all.append(it.float().flatten().cpu())
                with torch.no_grad():
                    out = model(x_adv.flatten(0, 1))
                    d[sl] = embedding_distance(out, tgt.repeat_interleave(k, dim=0)).view(-1, k).cpu()
                if g == 0:
                    l2_main.append((x_adv - x[:, None]).flatten(2).norm(dim=2).flatten().cpu())
                if keep:
                    x_adv_all[sl] = (x_adv * 255).round().clamp(0, 255).to(torch.uint8).cpu()
            dists[g_tag] = d
            if keep:
                adv_sets[g_tag] = x_adv_all
            asr[g_tag], asr_inst[g_tag] = {}, {}
            for t_tag, t_thr in zip(tags, thresholds):
                ok = d < t_thr
                asr[g_tag][t_tag] = float(ok.float().mean())
                asr_inst[g_tag][t_tag] = float(ok.any(dim=1).float().mean())
                metrics[f"attack/asr_g{g_tag}_t{t_tag}"] = asr[g_tag][t_tag]
                metrics[f"attack/asr_instance_g{g_tag}_t{t_tag}"] = asr_inst[g_tag][t_tag]
                for j, a in enumerate(attr_names):
                    per_attr[a][f"g{g_tag}_t{t_tag}"] = float(ok[:, j].float().mean())
            if grid_src is not None and p.grid_examples:
                self._grids(ctx, data, tgt_idx, grid_src, attr_names, g_tag, d, thresholds[g])
        main = tags[0]
        metrics["attack/asr"] = asr[main][main]
        metrics["attack/asr_instance"] = asr_inst[main][main]
        for a in attr_names:
            if generator is not None:
                metrics[f"attack/asr_{a}"] = per_attr[a][f"g{main}_t{main}"]
        metrics["attack/iters"] = float(torch.cat(iters_all).mean())
        metrics["attack/time_per_image_s"] = t_attack / max(n * k * len(tags), 1)
        if recon_err:
            metrics["attack/recon_mse"] = float(torch.cat(recon_err).mean())
        metrics["attack/l2_to_source"] = float(torch.cat(l2_main).mean())
        transfer = self._transfer(ctx, parts, adv_sets, dists, thresholds, tgt_idx, metrics)
        extra["semantic_adv"] = {
            "interpolation": getattr(attack.params, "interpolation", None),
            "attack": spec.attack.name,
            "fprs": list(p.fprs),
            "thresholds": thresholds,
            "attributes": attr_names,
            "num_pairs": n,
            "asr": asr,
            "asr_instance": asr_inst,
            "asr_per_attribute": per_attr,
            "transfer": transfer,
        }
        ctx.recorder.log(metrics)
        return metrics, extra

    def _transfer(self, ctx, parts, adv_sets, dists, thresholds, tgt_idx, metrics) -> dict[str, Any]:
        """Share of the examples that succeeded on the source victim at G-FPR (distance below its threshold)
        that also fool each transfer victim at each T-FPR (thresholds chosen on that victim's dev pairs)."""
        p, spec = self.params, ctx.spec
        data: FaceAttributeData = parts.data
        out: dict[str, Any] = {}
        tags = [fpr_tag(f) for f in p.fprs]
        for node in p.transfer_victims:
            sub = ctx.spec_with(victim=node)
            other, _ = ctx.prepare_victim(parts, sub)
            other = other.to(spec.device).eval()
            other_thr, _ = choose_thresholds(other, data, p, spec.device, spec.seed)
            tgt = embed(other, data, "test", tgt_idx, spec.device)
            name = sub.victim.name
            table: dict[str, dict[str, float]] = {}
            for g, g_tag in enumerate(tags):
                ok_src = dists[g_tag] < thresholds[g]
                x = adv_sets[g_tag][ok_src].float() / 255
                rows = torch.nonzero(ok_src)[:, 0]
                table[g_tag] = {}
                with torch.no_grad():
                    emb = (
                        torch.cat([other(x[i : i + 256].to(spec.device)) for i in range(0, len(x), 256)])
                        if len(x)
                        else None
                    )
                for t_tag, t_thr in zip(tags, other_thr):
                    v = (
                        float((embedding_distance(emb, tgt[rows]) < t_thr).float().mean())
                        if emb is not None
                        else float("nan")
                    )
                    table[g_tag][t_tag] = v
                    metrics[f"transfer/asr_{name}_g{g_tag}_t{t_tag}"] = v
            out[name] = {"thresholds": other_thr, "asr": table}
        return out

    def _grids(self, ctx, data, tgt_idx, grid_src, attr_names, g_tag, d, thr) -> None:
        x, x_edit, x_adv, c, sl = grid_src
        m = min(self.params.grid_examples, x.shape[0])
        targets = data.load_images("test", tgt_idx[sl][:m])
        d = d[sl][:m]
        # per pair: the attribute whose adversarial image came closest to the target
        best = d.argmin(dim=1)
        cols = torch.arange(m)
        titles = [f"{attr_names[int(best[j])]} d={float(d[j, best[j]]):.2f}" for j in range(m)]
        rows = [("source", x[:m]), ("target", targets)]
        if x_edit is not None:
            rows.append(("G(x, c_new)", x_edit[cols, best]))
        rows.append(("adversarial", x_adv[cols, best]))
        path = _save_grid(rows, titles, ctx.run_dir / f"semanticadv_pairs_g{g_tag}.png")
        ctx.recorder.image(f"examples_pairs_g{g_tag}", path, caption=f"G-FPR {g_tag}, threshold {thr:.3f}")
        if x_edit is not None:
            k = x_edit.shape[1]
            idx = [data.attribute_names.index(a) for a in attr_names]
            titles = [
                f"{'-' if c[0, i] > 0.5 else '+'}{a} d={float(d[0, j]):.2f}"
                for j, (i, a) in enumerate(zip(idx, attr_names))
            ]
            rows = [
                ("source", x[:1].expand(k, -1, -1, -1)),
                ("G(x, c_new)", x_edit[0]),
                ("adversarial", x_adv[0]),
            ]
            path = _save_grid(rows, titles, ctx.run_dir / f"semanticadv_attributes_g{g_tag}.png")
            ctx.recorder.image(
                f"examples_attributes_g{g_tag}", path, caption=f"every attribute, G-FPR {g_tag}"
            )


def _dataset_attributes(spec) -> list[str] | None:
    attrs = getattr(spec.dataset, "attributes", None)
    if attrs is not None:
        return list(attrs)
    if spec.dataset.name == "synthfaces":
        from advlab.data.synthfaces import ATTRIBUTES

        return list(ATTRIBUTES)
    return None


def _dataset_size(spec) -> int | None:
    for name in ("image_size", "size"):
        if hasattr(spec.dataset, name):
            return int(getattr(spec.dataset, name))
    return None
