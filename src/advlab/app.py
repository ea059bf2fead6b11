"""The ``advlab`` entrypoint: one Hydra app composing dataset, victim, attack, defense and logger."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def config_dir() -> str:
    """The packaged configs (wheel install) or the repository's ``conf/`` (editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"advlab configs not found next to {here}; reinstall advlab")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    from advlab.runner import run

    results = run(cfg, HydraConfig.get().runtime.output_dir)
    return sweep_objective(results)


def sweep_objective(results: dict) -> float | None:
    """The value a Hydra sweeper optimises: the task's headline metric (``Task.objective_metric``) under
    attack if the run has it, else on clean inputs (or the attack's, e.g. ``attack/asr`` for verification)."""
    from advlab.tasks.base import TASKS

    name = TASKS.get(results["task"]).objective_metric
    metrics = results["metrics"]
    for phase in ("adv", "clean", "attack"):
        if f"{phase}/{name}" in metrics:
            return metrics[f"{phase}/{name}"]
    return None


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
