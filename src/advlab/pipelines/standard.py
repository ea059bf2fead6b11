"""``pipeline=standard``: prepare the victim (load, or train with the defense, cached), optimise the universal
perturbation when the attack is one (or load ``attack.perturbation_path``), then evaluate clean and under the
attack on the test split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from advlab.attacks.universal import UniversalAttack
from advlab.loops.evaluate import evaluate
from advlab.loops.universal import fit_universal
from advlab.merge import SHARD_STATE
from advlab.pipelines.base import PIPELINES, Pipeline
from advlab.utils import atomic_torch_save

if TYPE_CHECKING:
    from advlab.context import RunContext


def fit_or_load_universal(
    ctx: RunContext, attack: UniversalAttack, model: torch.nn.Module, data: Any
) -> None:
    """Optimise ``attack``'s perturbation on the training split (resumable from the run folder) and save it
    as ``perturbation.pt`` plus its pictures, or load ``attack.perturbation_path``."""
    spec = ctx.spec
    if attack.params.perturbation_path:
        attack.init_perturbation(data.info, spec.device, torch.Generator().manual_seed(spec.seed))
        attack.load(attack.params.perturbation_path, spec.device)
        return
    fit_universal(
        attack,
        model,
        data,
        spec.device,
        spec.seed,
        resume_path=ctx.scratch("universal_state.pt"),
        log=ctx.recorder.log,
        progress=spec.progress,
        epoch_end=attack.epoch_end_hook(model, data, spec.device),
    )
    atomic_torch_save(attack.state_dict(), ctx.run_dir / "perturbation.pt")
    for name, path in attack.save_artifacts(ctx.run_dir).items():
        ctx.recorder.image(name, path)


@PIPELINES.register("standard")
class StandardPipeline(Pipeline):
    shardable = True

    def run(self, ctx: RunContext) -> tuple[dict[str, float], dict[str, Any]]:
        spec = ctx.spec
        parts = ctx.build()
        victim, victim_info = ctx.prepare_victim(parts)
        model = parts.defense.wrap(victim).to(spec.device).eval()
        if isinstance(parts.attack, UniversalAttack):
            fit_or_load_universal(ctx, parts.attack, model, parts.data)
        result = evaluate(
            model,
            parts.task,
            parts.data,
            parts.attack,
            spec.eval,
            spec.device,
            spec.seed,
            progress=spec.progress,
            resume_path=ctx.scratch("eval_state.pt"),  # a killed/requeued run resumes from here
            # eval.num_shards > 1: this shard's final state, which advlab-merge combines (advlab/merge.py)
            state_path=ctx.run_dir / SHARD_STATE if spec.eval.num_shards > 1 else None,
        )
        ctx.recorder.log(result.metrics)
        if result.examples.x.shape[0] > 0:
            grid = parts.task.example_grid(result.examples, ctx.run_dir / "adv_examples.png")
            ctx.recorder.image("adv_examples", grid, caption="clean / adversarial / perturbation")
        if result.targets is not None:
            torch.save(result.targets, ctx.run_dir / "targets.pt")
        return result.metrics, {"victim": {"name": spec.victim.name, **victim_info}}
