"""``pipeline=robustness_suite``: several models, each evaluated against several attacks and common corruptions.

The generic form of the tables in PAT (Laidlaw et al. 2021, Tables 2-4) and of any "defenses x threat models"
comparison. Config (``conf/pipeline/robustness_suite.yaml``; experiments fill it):

* ``models``: ``{name: overrides}`` -- each a set of config overrides merged into the run's config
  (``{defense: {...}}``, ``{victim: {checkpoint: ...}}``, ``{train: {...}}``). Every model is prepared like a
  standard run (trained with its defense and cached, or loaded).
* ``attacks``: ``{name: attack config}`` (any attack-group option, composed with
  ``/attack@pipeline.attacks.<name>: <option>`` in the experiment's defaults). Every model is evaluated against
  every attack by the evaluate loop; ``<model>/adv/<attack>/acc`` (and the loop's ``attack/*`` metrics under
  ``<model>/attack/<attack>/*``) are recorded, plus ``<model>/adv/union/acc``: the share of test images the
  model classifies correctly under *every* attack (the paper's union accuracy).
* ``corruption``: the 15 common corruptions x severities, generated on the fly (``source: generate``, any
  dataset), read from ``<corruption>.npy`` files (``source: npy``, CIFAR-10-C) or from the released ImageNet-C
  folders for the dataset's classes (``source: imagenet_c``, ``dataset=imagenet100``). Records
  ``<model>/corruption/<name>/err`` (mean over severities), ``<model>/corruption/clean_err`` and, against the
  ``baseline``, ``<model>/corruption/mCE`` and ``<model>/corruption/rel_mCE``.
* ``baseline``: the model whose errors normalise mCE: one of the suite's models or of ``baselines``
  (``model``), a model of another suite run's ``results.json`` (``results`` + ``model``), or a victim
  ``checkpoint``.
* ``baselines``: ``{name: overrides}`` like ``models``, for models prepared only to normalise the corruption
  errors (not attacked, not in the robustness table), e.g. the paper's AlexNet:
  ``baselines: {alexnet: {victim: {name: alexnet_cifar}}}`` with ``baseline.model: alexnet`` -- trained by advlab
  (cached) or loaded (``pipeline.baselines.alexnet.victim.checkpoint=<the authors' alexnet_cifar.pt>``).

The run folder gets ``robustness_table.md/.csv`` (models x attacks) and ``corruption_table.md/.csv``. The suite
is resumable: every finished (model, attack) and (model, corruptions) result is saved to ``suite_state.pt``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import OmegaConf

from advlab.attacks.base import ATTACKS, NoAttack
from advlab.data.cifar10c import GeneratedCorruptions, NpyCorruptions
from advlab.data.configs import content_key
from advlab.data.imagenet_c import ImageNetCFolders
from advlab.errors import ConfigError
from advlab.loops.evaluate import evaluate
from advlab.metrics.corruption import mce, relative_mce
from advlab.pipelines.base import PIPELINES, Pipeline
from advlab.pipelines.configs import BaselineConfig, CorruptionSuiteConfig, RobustnessSuiteConfig  # noqa: F401
from advlab.progress import track
from advlab.resume import LoopState
from advlab.utils import atomic_write_text

if TYPE_CHECKING:
    from advlab.context import RunContext

logger = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def model_spec(ctx: RunContext, overrides: Any):
    """The spec of one suite model: the run's config with ``overrides`` (``{defense: {name: pat, ...}}``) applied
    by :meth:`RunContext.spec_with`."""
    return ctx.spec_with(**(_plain(overrides) or {}))


@dataclasses.dataclass
class SuiteState(LoopState):
    """Every finished (model, attack) and (model, corruptions) result of the suite so far."""

    attacks: dict  # "<model>/<attack>" -> (metrics, per-example correct)
    corruptions: dict  # "<model>" -> corruption errors


@PIPELINES.register("robustness_suite")
class RobustnessSuite(Pipeline):
    Config = RobustnessSuiteConfig

    def check(self, ctx: RunContext) -> None:
        for group in ("models", "baselines"):
            for name, overrides in getattr(self.params, group).items():
                try:
                    model_spec(ctx, overrides)
                except ConfigError as exc:
                    raise ConfigError(f"pipeline.{group}.{name}: {exc}") from None

    # ---- state ---------------------------------------------------------------------------------------
    def _save(self, ctx: RunContext, state: dict) -> None:
        SuiteState(state["attacks"], state["corruptions"]).save(ctx.scratch("suite_state.pt"))

    def _load(self, ctx: RunContext) -> dict:
        saved = SuiteState.load(ctx.scratch("suite_state.pt"))
        return {"attacks": {}, "corruptions": {}} if saved is None else dataclasses.asdict(saved)

    # ---- corruption errors -----------------------------------------------------------------------------
    def _corruption_source(self, ctx: RunContext, spec, data):
        c = self.params.corruption
        if c.source == "npy":
            return NpyCorruptions(c.root, list(c.names), c.num_examples)
        if c.source == "imagenet_c":
            if not hasattr(data, "classes") or not hasattr(data, "test_transform"):
                raise ConfigError(
                    f"pipeline.corruption.source=imagenet_c reads ImageNet-C for an ImageNet dataset's classes "
                    f"(dataset=imagenet100), not dataset={spec.dataset.name}"
                )
            return ImageNetCFolders(
                c.root, list(c.names), list(c.severities), data.classes, data.test_transform(), c.num_examples
            )
        x, y = _stack(data.dataset("test"))
        if c.num_examples is not None:
            x, y = x[: c.num_examples], y[: c.num_examples]
        key = {"dataset": content_key(spec.dataset), "n": len(y)}
        return GeneratedCorruptions(x, y, spec.cache_dir, key)

    @torch.no_grad()
    def _error(self, model, task, x, y, device, batch_size: int) -> float:
        wrong, n = 0, 0
        for i in range(0, len(y), batch_size):
            xb, yb = x[i : i + batch_size].to(device), y[i : i + batch_size].to(device)
            wrong += int((~task.correct(model(xb), yb)).sum())
            n += len(yb)
        return wrong / max(n, 1)

    def corruption_errors(self, ctx: RunContext, model, task, source, clean) -> dict:
        c = self.params.corruption
        device = ctx.spec.device
        out: dict[str, Any] = {"clean": self._error(model, task, *clean, device, c.batch_size), "errors": {}}
        for name in track(c.names, "common corruptions", enabled=ctx.spec.progress, unit="corruption"):
            errs = []
            for s in c.severities:
                x, y = source.get(name, s)
                errs.append(self._error(model, task, x, y, device, c.batch_size))
            out["errors"][name] = errs
            logger.info(f"  {name}: err " + " ".join(f"{e:.3f}" for e in errs))
        return out

    # ---- run -------------------------------------------------------------------------------------------
    def run(self, ctx: RunContext) -> tuple[dict[str, float], dict[str, Any]]:
        p = self.params
        state = self._load(ctx)
        metrics: dict[str, float] = {}
        victims: dict[str, Any] = {}
        sources: dict[str, Any] = {}
        for mname, overrides in p.models.items():
            mspec = model_spec(ctx, overrides)
            parts = ctx.build(mspec)
            victim, info = ctx.prepare_victim(parts, mspec)
            victims[mname] = info
            model = parts.defense.wrap(victim).to(mspec.device).eval()
            eval_params = dataclasses.replace(
                mspec.eval,
                num_examples=p.num_examples if p.num_examples is not None else mspec.eval.num_examples,
            )
            key = f"{mname}/clean"
            if key not in state["attacks"]:
                result = evaluate(
                    model,
                    parts.task,
                    parts.data,
                    NoAttack(None, parts.task),
                    eval_params,
                    mspec.device,
                    mspec.seed,
                    progress=mspec.progress,
                )
                state["attacks"][key] = (result.metrics, result.clean_correct)
                self._save(ctx, state)
            m, union = state["attacks"][key]
            metrics.update({f"{mname}/{k}": v for k, v in m.items() if k.startswith("clean/")})
            union = union.clone()
            for aname, node in p.attacks.items():
                key = f"{mname}/{aname}"
                if key not in state["attacks"]:
                    attack = ATTACKS.build(
                        ATTACKS.parse(_plain(node), key=f"pipeline.attacks.{aname}"), parts.task
                    )
                    logger.info(f"{mname}: attack {aname}")
                    result = evaluate(
                        model,
                        parts.task,
                        parts.data,
                        attack,
                        eval_params,
                        mspec.device,
                        mspec.seed,
                        progress=mspec.progress,
                        resume_path=ctx.scratch(f"eval_state_{mname}_{aname}.pt"),
                    )
                    state["attacks"][key] = (result.metrics, result.adv_correct)
                    self._save(ctx, state)
                m, adv_correct = state["attacks"][key]
                for k, v in m.items():
                    phase, rest = k.split("/", 1)
                    if phase in ("adv", "attack"):
                        metrics[f"{mname}/{phase}/{aname}/{rest}"] = v
                if p.union is None or aname in p.union:
                    union &= adv_correct
            if p.attacks and (p.union is None or p.union):
                metrics[f"{mname}/adv/union/acc"] = float(union.float().mean())
            if p.corruption.enabled and mname not in state["corruptions"]:
                dkey = json.dumps(dataclasses.asdict(mspec.dataset), sort_keys=True, default=str)
                if dkey not in sources:
                    sources[dkey] = self._corruption_source(ctx, mspec, parts.data)
                src = sources[dkey]
                clean = self._clean_for(src, parts.data)
                logger.info(f"{mname}: common corruptions")
                state["corruptions"][mname] = self.corruption_errors(ctx, model, parts.task, src, clean)
                self._save(ctx, state)
            ctx.recorder.log({k: v for k, v in metrics.items() if k.startswith(f"{mname}/")})
        extra: dict[str, Any] = {"victims": victims}
        if p.corruption.enabled:
            baseline = self._baseline(ctx, state, sources)
            scored = [m for m in state["corruptions"] if m in p.models]
            for mname, res in [(m, state["corruptions"][m]) for m in scored] + (
                [(baseline["name"], baseline)] if baseline is not None and "name" in baseline else []
            ):
                for c, errs in res["errors"].items():
                    metrics[f"{mname}/corruption/{c}/err"] = sum(errs) / len(errs)
                metrics[f"{mname}/corruption/clean_err"] = res["clean"]
                if baseline is not None and mname in p.models:
                    metrics[f"{mname}/corruption/mCE"] = mce(res["errors"], baseline["errors"])
                    metrics[f"{mname}/corruption/rel_mCE"] = relative_mce(
                        res["errors"], res["clean"], baseline["errors"], baseline["clean"]
                    )
            extra["corruption_errors"] = {
                "severities": list(p.corruption.severities),
                "models": {k: v for k, v in state["corruptions"].items() if k in p.models},
                "baseline": baseline,
            }
        self._tables(ctx, metrics, state)
        ctx.recorder.log(metrics)
        return metrics, extra

    def _clean_for(self, source, data):
        if isinstance(source, GeneratedCorruptions):
            return source.x, source.y
        if isinstance(source, ImageNetCFolders):
            return source.clean(data.root / "val")
        x, y = _stack(data.dataset("test"))
        n = len(source.labels) // 5 if len(source.labels) % 5 == 0 and len(source.labels) > len(y) else len(y)
        k = min(len(y), n if source.limit is None else min(n, source.limit))
        return x[:k], y[:k]

    def _baseline(self, ctx: RunContext, state: dict, sources: dict) -> dict | None:
        b = self.params.baseline
        if b.results:
            payload = json.loads(Path(os.path.expanduser(b.results)).read_text())
            stored = payload.get("corruption_errors")
            if not stored:
                raise ConfigError(
                    f"pipeline.baseline.results: '{b.results}' holds no corruption errors (not a "
                    "robustness_suite run with corruptions)"
                )
            if stored["severities"] != list(self.params.corruption.severities):
                raise ConfigError(
                    f"pipeline.baseline.results: severities {stored['severities']} differ from this run's "
                    f"{list(self.params.corruption.severities)}"
                )
            models = stored["models"]
            name = b.model or (next(iter(models)) if len(models) == 1 else None)
            if name not in models:
                raise ConfigError(f"pipeline.baseline.model: choose one of {list(models)} in '{b.results}'")
            return models[name]
        if b.checkpoint:
            if "__baseline__" not in state["corruptions"]:
                victim = {**_plain(ctx.cfg.victim), **(b.victim_overrides or {}), "checkpoint": b.checkpoint}
                bspec = model_spec(ctx, {"victim": victim, "defense": {"name": "none"}})
                parts = ctx.build(bspec)
                model, _ = ctx.prepare_victim(parts, bspec)
                dkey = json.dumps(dataclasses.asdict(bspec.dataset), sort_keys=True, default=str)
                src = sources.get(dkey) or self._corruption_source(ctx, bspec, parts.data)
                clean = self._clean_for(src, parts.data)
                state["corruptions"]["__baseline__"] = self.corruption_errors(
                    ctx, model.eval(), parts.task, src, clean
                )
                self._save(ctx, state)
            return state["corruptions"]["__baseline__"]
        if b.model in self.params.baselines:
            key = f"__baseline__/{b.model}"
            if key not in state["corruptions"]:
                bspec = model_spec(ctx, self.params.baselines[b.model])
                parts = ctx.build(bspec)
                victim, _ = ctx.prepare_victim(parts, bspec)
                model = parts.defense.wrap(victim).to(bspec.device).eval()
                dkey = json.dumps(dataclasses.asdict(bspec.dataset), sort_keys=True, default=str)
                src = sources.get(dkey) or self._corruption_source(ctx, bspec, parts.data)
                logger.info(f"baseline {b.model}: common corruptions")
                state["corruptions"][key] = self.corruption_errors(
                    ctx, model, parts.task, src, self._clean_for(src, parts.data)
                )
                self._save(ctx, state)
            return {**state["corruptions"][key], "name": b.model}
        if b.model:
            return state["corruptions"][b.model]
        return None

    def _tables(self, ctx: RunContext, metrics: dict, state: dict) -> None:
        p = self.params
        cols = ["clean", *p.attacks, *(["union"] if p.attacks else [])]
        rows = []
        for m in p.models:
            row = {"model": m, "clean": metrics.get(f"{m}/clean/acc")}
            for a in [*p.attacks, "union"]:
                row[a] = metrics.get(f"{m}/adv/{a}/acc")
            if p.corruption.enabled:
                row["mCE"] = metrics.get(f"{m}/corruption/mCE")
                row["rel_mCE"] = metrics.get(f"{m}/corruption/rel_mCE")
            rows.append(row)
        header = ["model", *cols, *(["mCE", "rel_mCE"] if p.corruption.enabled else [])]
        _write_tables(ctx.run_dir / "robustness_table", header, rows)
        if p.corruption.enabled:
            crow = []
            for c in p.corruption.names:
                r = {"corruption": c}
                for m in p.models:
                    r[m] = metrics.get(f"{m}/corruption/{c}/err")
                crow.append(r)
            _write_tables(ctx.run_dir / "corruption_table", ["corruption", *p.models], crow)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))


def _write_tables(stem: Path, header: list[str], rows: list[dict]) -> None:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(r.get(h)) for h in header) + " |" for r in rows]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for r in rows:
            w.writerow({h: r.get(h) for h in header})


def _stack(ds) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(ds, "tensors"):
        return ds.tensors[0], ds.tensors[1]
    xs, ys = zip(*[ds[i] for i in range(len(ds))])
    return torch.stack(xs), torch.as_tensor(ys)
