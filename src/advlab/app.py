"""The ``advlab`` entrypoint: one Hydra app composing dataset, victim, attack, defense and logger."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from advlab.config_files import config_dir, register_defaults


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    from advlab.validation import check_config

    check_config(cfg)  # every bad value at once, before torch and the models are imported
    from advlab.runner import run

    results = run(cfg, HydraConfig.get().runtime.output_dir)
    return sweep_objective(results)


def sweep_objective(results: dict) -> float | None:
    """The value a Hydra sweeper optimises: the task's headline metric (``Task.objective_metric``) under
    attack if the run has it, else on clean inputs (or the attack's, e.g. ``attack/asr`` for verification)."""
    from advlab.tasks.configs import TASKS

    name = TASKS.get(results["task"]).objective_metric
    metrics = results["metrics"]
    for phase in ("adv", "clean", "attack"):
        if f"{phase}/{name}" in metrics:
            return metrics[f"{phase}/{name}"]
    return None


def main() -> None:
    register_defaults()  # the dataclass defaults, before Hydra composes
    _hydra_main()


if __name__ == "__main__":
    main()
