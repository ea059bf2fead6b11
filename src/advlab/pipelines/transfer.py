"""``pipeline=transfer``: evaluate saved universal perturbations (EOT patches ...) on a list of victims in one
run -- the cross-model transfer matrix (source model the patch was trained on x target model it is applied to),
as Table I of the EOT patch paper.

``pipeline.patches`` maps a source name to a saved ``perturbation.pt`` (or, when empty, the run's
``attack.perturbation_path`` is the one patch, named ``pipeline.source`` or after the victim of the run that
saved it). ``pipeline.targets`` lists victim config names (``conf/victim/<name>.yaml``);
``pipeline.target_overrides.<name>`` merges extra victim keys (``checkpoint``, ``cfg_options`` ...). Every
target is prepared like the run's own victim (loaded, or trained and cached), evaluated clean once and under
every patch with the evaluate loop. Metrics: ``transfer/<target>/clean/mIoU`` and
``transfer/<source>/<target>/adv/mIoU`` (and the task's other metrics), plus ``transfer_matrix.md``,
``.csv`` and a heatmap ``transfer_matrix.png`` in the run folder (see :mod:`advlab.reporting.transfer_table`, which
also merges the rows of several runs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import OmegaConf

from advlab.attacks.universal import UniversalAttack
from advlab.errors import ConfigError
from advlab.loops.evaluate import evaluate
from advlab.pipelines.base import PIPELINES, Pipeline
from advlab.pipelines.configs import TransferConfig  # noqa: F401

if TYPE_CHECKING:
    from advlab.context import RunContext


def source_name(path: str) -> str:
    """The victim of the run that saved ``path`` (its results.json / Hydra config), else the folder name."""
    folder = Path(os.path.expanduser(path)).resolve().parent
    results = folder / "results.json"
    if results.is_file():
        victim = json.loads(results.read_text()).get("victim")
        name = victim.get("name") if isinstance(victim, dict) else victim
        if name:
            return str(name)
    hydra_cfg = folder / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        name = OmegaConf.load(hydra_cfg).get("victim", {}).get("name")
        if name:
            return str(name)
    return folder.name


@PIPELINES.register("transfer")
class TransferPipeline(Pipeline):
    Config = TransferConfig

    def sources(self, ctx: RunContext) -> dict[str, str]:
        if self.params.patches:
            return {k: str(v) for k, v in self.params.patches.items()}
        path = ctx.spec.attack.perturbation_path if hasattr(ctx.spec.attack, "perturbation_path") else None
        if not path:
            raise ConfigError(
                "pipeline.patches is empty and attack.perturbation_path (attack.patch_path) is not set: give the "
                "saved patch(es) to transfer"
            )
        return {self.params.source or source_name(path): str(path)}

    def target_specs(self, ctx: RunContext) -> dict[str, Any]:
        overrides = OmegaConf.to_container(OmegaConf.create(self.params.target_overrides), resolve=True)
        unknown = sorted(set(overrides) - set(self.params.targets))
        if unknown:
            raise ConfigError(f"pipeline.target_overrides: {unknown} are not in pipeline.targets")
        specs = {}
        for t in self.params.targets:  # each target's victim option, with its overrides, replaces the run's
            try:
                node = ctx.group_option("victim", t)
            except ConfigError as exc:
                raise ConfigError(f"pipeline.targets: {exc}") from None
            node = OmegaConf.to_container(OmegaConf.merge(node, overrides.get(t) or {}), resolve=True)
            specs[t] = ctx.spec_with(victim=node)
        return specs

    def check(self, ctx: RunContext) -> None:
        self.sources(ctx)
        self.target_specs(ctx)  # every target's config validates before any work
        parts = ctx.build()
        if not isinstance(parts.attack, UniversalAttack):
            raise ConfigError(
                f"pipeline=transfer needs a universal attack (got attack={ctx.spec.attack.name})"
            )

    def run(self, ctx: RunContext) -> tuple[dict[str, float], dict[str, Any]]:
        from advlab.reporting.transfer_table import write_matrix

        sources = self.sources(ctx)
        metrics: dict[str, float] = {}
        victims: dict[str, Any] = {}
        for target, spec in self.target_specs(ctx).items():
            parts = ctx.build(spec)
            victim, info = ctx.prepare_victim(parts, spec)
            model = parts.defense.wrap(victim).to(spec.device).eval()
            victims[target] = {"name": spec.victim.name, **info}
            clean_done = False
            for source, path in sources.items():
                attack = parts.attack
                attack.init_perturbation(
                    parts.data.info, spec.device, torch.Generator().manual_seed(spec.seed)
                )
                attack.load(path, spec.device)
                result = evaluate(
                    model, parts.task, parts.data, attack, spec.eval, spec.device, spec.seed,
                    progress=spec.progress,
                )  # fmt: skip
                m, examples = result.metrics, result.examples
                row = {f"transfer/{source}/{target}/{k}": v for k, v in m.items() if k.startswith("adv/")}
                if not clean_done:
                    row.update({f"transfer/{target}/{k}": v for k, v in m.items() if k.startswith("clean/")})
                    clean_done = True
                metrics.update(row)
                ctx.recorder.log(row)
                if examples.x.shape[0] > 0 and examples.x_adv is not None:
                    grid = parts.task.example_grid(
                        examples, ctx.run_dir / f"transfer_{source}_to_{target}.png"
                    )
                    ctx.recorder.image(
                        f"transfer/{source}/{target}", grid, caption=f"{source} patch on {target}"
                    )
            del model, victim
        files = write_matrix(
            {"run": ".", "metrics": metrics}, ctx.run_dir, self.params.metric, title="transfer_matrix"
        )
        if "png" in files:
            ctx.recorder.image(
                "transfer_matrix", files["png"], caption=f"{self.params.metric}: source x target"
            )
        return metrics, {"victim": victims, "transfer": {"sources": sources, "targets": self.params.targets}}


__all__ = ["TransferPipeline"]
