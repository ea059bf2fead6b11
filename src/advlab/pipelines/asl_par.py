"""``pipeline=asl_par``: the whole ASL-PAR experiment in one run.

1. prepare the victim (train it with the fit loop and cache it, or load ``victim.checkpoint``) — trained
   without any defense;
2. fit the universal noise (``attack``, e.g. ``asl_par``) on the training split, or load
   ``attack.perturbation_path``; save ``perturbation.pt`` / ``perturbation.png`` / ``label_shift.txt``;
3. evaluate on the test split against the clean ground truth: ``clean/*`` and ``adv/*`` (mA, instance_acc,
   precision, recall, f1, ``attack/linf_max``);
4. with ``defense=asl_par``: fine-tune the noise filter and text prompts on noisy training images (fit loop,
   resumable), then evaluate the defended model: ``defended/*`` on the attacked test images and
   ``defended_clean/*`` on the clean ones.

Per-attribute results of every phase go to ``attributes.md``, drawn from the meters behind the phase's metrics
(see :func:`attribute_tables`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from advlab.attacks.universal import UniversalAttack
from advlab.errors import ConfigError
from advlab.loops.evaluate import evaluate
from advlab.loops.fit import fit
from advlab.pipelines.base import PIPELINES, Pipeline
from advlab.pipelines.configs import ASLPARPipelineConfig  # noqa: F401
from advlab.pipelines.standard import fit_or_load_universal
from advlab.utils import atomic_torch_save, atomic_write_text

if TYPE_CHECKING:
    from advlab.context import RunContext

logger = logging.getLogger(__name__)


#: attributes.md section -> the results.json metric prefix of the same phase
PHASES = {
    "victim clean": "clean",
    "victim attacked": "adv",
    "defended clean": "defended_clean",
    "defended attacked": "defended",
}


def attribute_tables(meters: dict[str, Any]) -> str:
    """Markdown per-attribute tables, one per phase (a key of :data:`PHASES`), drawn from the very meters the
    phase's ``<prefix>/*`` metrics in ``results.json`` were computed from: the ``mA`` line is the metric itself
    (``repr`` of the same float), so the two reports agree to the last digit."""
    parts = []
    for name, meter in meters.items():
        m_a = meter.compute()["mA"]
        parts.append(f"## {name} (`{PHASES[name]}/*`)\n\nmA {m_a!r}\n\n{meter.attribute_table()}")
    return "\n".join(parts)


@PIPELINES.register("asl_par")
class ASLPARPipeline(Pipeline):
    Config = ASLPARPipelineConfig

    def check(self, ctx: RunContext) -> None:
        spec = ctx.spec
        if spec.attack.name == "none":
            raise ConfigError("pipeline=asl_par needs a universal attack (attack=asl_par)")
        if self.params.require_perturbation and not getattr(spec.attack, "perturbation_path", None):
            raise ConfigError(
                "attack.perturbation_path: a transfer run applies a saved noise; set it to <run>/perturbation.pt"
            )
        if spec.defense.name not in ("none", "asl_par"):
            raise ConfigError(
                f"pipeline=asl_par: defense must be none or asl_par (got '{spec.defense.name}')"
            )

    def run(self, ctx: RunContext) -> tuple[dict[str, float], dict[str, Any]]:
        spec = ctx.spec
        victim_spec = ctx.spec_with(defense={"name": "none"})  # the victim trains without the defense
        parts = ctx.build(victim_spec)
        if not isinstance(parts.attack, UniversalAttack):
            raise ConfigError(f"pipeline=asl_par needs a universal attack (got attack={spec.attack.name})")
        victim, victim_info = ctx.prepare_victim(parts, victim_spec)
        victim = victim.to(spec.device).eval()
        attack, task, data = parts.attack, parts.task, parts.data
        fit_or_load_universal(ctx, attack, victim, data)
        result = evaluate(
            victim, task, data, attack, spec.eval, spec.device, spec.seed,
            progress=spec.progress, resume_path=ctx.scratch("eval_state.pt"),
        )  # fmt: skip
        metrics = result.metrics
        ctx.recorder.log(metrics)
        tables = {"victim clean": result.meters["clean"], "victim attacked": result.meters["adv"]}
        if spec.defense.name == "asl_par":
            defense = ctx.build().defense
            defense.set_attack(attack)
            defended = defense.wrap(victim).to(spec.device)
            logger.info(
                "fine-tuning the ASL-PAR defense (noise filter + text prompts) on noisy training data"
            )
            fit(
                defended, task, data, spec.defense.train_config(), defense, spec.device, spec.seed,
                resume_path=ctx.scratch("defense_state.pt"), log=ctx.recorder.log, progress=spec.progress,
            )  # fmt: skip
            defended.eval()
            atomic_torch_save(defended.defense_state(), ctx.run_dir / "defense.pt")
            after_result = evaluate(
                defended, task, data, attack, spec.eval, spec.device, spec.seed,
                progress=spec.progress, resume_path=ctx.scratch("eval_defended_state.pt"),
            )  # fmt: skip
            after = after_result.metrics
            for key, value in after.items():
                phase, _, name = key.partition("/")
                if phase == "clean":
                    metrics[f"defended_clean/{name}"] = value
                elif phase == "adv":
                    metrics[f"defended/{name}"] = value
            ctx.recorder.log({k: v for k, v in metrics.items() if k.startswith("defended")})
            tables.update(
                {
                    "defended clean": after_result.meters["clean"],
                    "defended attacked": after_result.meters["adv"],
                }
            )
        if self.params.attribute_table:
            text = attribute_tables(tables)
            atomic_write_text(ctx.run_dir / "attributes.md", text)
        return metrics, {"victim": {"name": spec.victim.name, **victim_info}}
