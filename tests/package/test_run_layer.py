"""The run layer's shared mechanisms: the artifact cache, the resumable loop state, deriving a sub-run."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg

from advlab.cache import ArtifactCache
from advlab.context import RunContext, build_spec
from advlab.errors import CheckpointError
from advlab.resume import LoopState, ResumeError


def test_cache_builds_once_then_loads_with_a_sidecar(tmp_path):
    cache = ArtifactCache(tmp_path)
    art = cache.artifact("things", "digits-x", {"seed": 0, "width": 8})
    assert art.path.parent == tmp_path / "things" and art.path.name.startswith("digits-x-")
    assert cache.artifact("things", "digits-x", {"width": 8, "seed": 0}).path == art.path  # order-free key
    assert cache.artifact("things", "digits-x", {"seed": 1, "width": 8}).path != art.path
    calls = []

    def build(resume: Path):
        calls.append(resume)
        resume.write_text("partial progress")  # a builder's resume file is removed once the artifact exists
        return {"w": torch.arange(4.0)}

    content, cached = cache.load_or_build(art, build)
    assert not cached and calls == [art.resume_path] and not art.resume_path.exists()
    assert json.loads(art.sidecar.read_text()) == {"seed": 0, "width": 8}
    again, cached = cache.load_or_build(art, build)
    assert cached and len(calls) == 1 and torch.equal(again["w"], content["w"])


def test_a_corrupt_cache_file_is_a_named_error(tmp_path):
    cache = ArtifactCache(tmp_path)
    art = cache.artifact("victims", "v", {"k": 1})
    art.path.parent.mkdir(parents=True)
    art.path.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=f"{art.path}.*delete it"):
        cache.load_or_build(art, lambda resume: {"w": torch.zeros(1)})


@dataclasses.dataclass
class CounterState(LoopState):
    step: int
    values: list


@dataclasses.dataclass
class OtherState(LoopState):
    step: int
    values: list


def test_loop_state_round_trip_restores_every_rng(tmp_path):
    path = tmp_path / "state.pt"
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    CounterState(5, [1, 2]).save(path)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)  # another process state
    state = CounterState.load(path)
    assert state == CounterState(5, [1, 2])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    assert CounterState.load(tmp_path / "absent.pt") is None and CounterState.load(None) is None


def test_unusable_resume_files_name_the_file_and_the_fix(tmp_path):
    path = tmp_path / "eval_state.pt"
    OtherState(1, []).save(path)
    with pytest.raises(ResumeError, match="holds a 'OtherState' state, not CounterState.*delete"):
        CounterState.load(path)
    path.write_bytes(b"\x00truncated")
    with pytest.raises(ResumeError, match=f"'{path}' cannot be read.*delete '{path}'"):
        CounterState.load(path)


def context(*overrides: str) -> RunContext:
    cfg = make_cfg(*overrides)
    return RunContext(cfg, build_spec(cfg), Path("unused"), {}, None, None)


def test_spec_with_a_named_node_replaces_and_anything_else_merges():
    ctx = context("victim=resnet18", "victim.small_input=false", "attack.eps=0.1")
    ctx.spec.device = torch.device("meta")  # stands for this rank's GPU
    replaced = ctx.spec_with(victim={"name": "smallcnn", "width": 4})
    assert replaced.victim.name == "smallcnn" and replaced.victim.width == 4
    assert replaced.device == torch.device("meta")  # pinned, not re-resolved from device=auto
    merged = ctx.spec_with(attack={"steps": 3}, seed=7)
    assert (merged.attack.eps, merged.attack.steps, merged.seed) == (0.1, 3, 7)
    assert ctx.spec.attack.steps == 10 and ctx.spec.seed == 0  # the run's own spec is untouched


def test_spec_with_a_group_option_name_composes_it_like_the_command_line():
    ctx = context()
    by_name = ctx.spec_with(victim="resnet18", defense="adv_training")
    cli = build_spec(make_cfg("victim=resnet18", "defense=adv_training"))
    assert by_name.victim == cli.victim and by_name.defense == cli.defense
    with pytest.raises(Exception, match="no config 'nope' in conf/victim"):
        ctx.spec_with(victim="nope")
