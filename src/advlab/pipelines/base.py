"""Pipelines: what one run does with its composed components.

``pipeline=standard`` (the default) fits the victim when needed, optimises a universal perturbation when the
attack is one, and evaluates clean and under the attack. Paper experiments that chain several stages (train
generators, compare several defenses, evaluate a transfer matrix ...) register their own pipeline here with a
typed ``Config`` (the ``pipeline`` config group) and receive a :class:`advlab.context.RunContext`, which
builds components, prepares (trains or loads) victims and records metrics. A pipeline returns its final
metrics and any extra fields for ``results.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from advlab.pipelines.configs import PIPELINES, PipelineConfig  # noqa: F401

if TYPE_CHECKING:
    from advlab.context import RunContext


class Pipeline:
    Config = PipelineConfig
    registered_name = "pipeline"
    #: supports ``eval.num_shards > 1`` (its results.json is one evaluation's, which advlab-merge rebuilds)
    shardable = False

    def __init__(self, params: Any):
        self.params = params

    def check(self, ctx: RunContext) -> None:
        """Validate everything the pipeline needs beyond the run's spec, before any work."""

    def run(self, ctx: RunContext) -> tuple[dict[str, float], dict[str, Any]]:
        """Do the work; return (final metrics, extra results.json fields)."""
        raise NotImplementedError
