"""SemA-ML against its definition: the consistent target (hand-computed on a small graph, and an independent
per-example graph walk on random requests), consistency of what it reaches, the perturbation bound and the
image box, targets reached on a linear model, ASR counted against the requested target, bad graphs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.attacks import ATTACKS
from advlab.attacks.sema_ml import (
    ancestor_matrix,
    consistent_targets,
    graph_violations,
    load_label_graph,
)
from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.registry import parse_config
from advlab.tasks.base import TASKS

# 0 => 1 => 2, 3 => 2, 4 => 5
EDGES = [(0, 1), (1, 2), (3, 2), (4, 5)]
NAMES = ["a", "b", "c", "d", "e", "f"]

# the 81 concepts of NUS-WIDE's Concepts81.txt
NUSWIDE = (
    "airport animal beach bear birds boats book bridge buildings cars castle cat cityscape clouds computer coral "
    "cow dancing dog earthquake elk fire fish flags flowers food fox frost garden glacier grass harbor horses "
    "house lake leaf map military moon mountain nighttime ocean person plane plants police protest railroad "
    "rainbow reflection road rocks running sand sign sky snow soccer sports statue street sun sunset surf "
    "swimmers tattoo temple tiger tower town toy train tree valley vehicle water waterfall wedding whales window "
    "zebra"
).split()


def ml_task(n: int = 6, shape=(3, 4, 4), names=None):
    info = DataInfo(n, shape, names or NAMES[:n], (0.0,) * shape[0], (1.0,) * shape[0])
    return TASKS.create("multilabel", info)


def sema(t, **params):
    return ATTACKS.create("sema_ml", t, **params)


def graph_file(tmp_path, text: str) -> str:
    path = tmp_path / "graph.yaml"
    path.write_text(text)
    return str(path)


def test_ancestor_matrix_is_the_transitive_closure():
    anc = ancestor_matrix(EDGES, 6)
    expected = torch.zeros(6, 6, dtype=torch.bool)
    for child, ancestors in {0: [1, 2], 1: [2], 3: [2], 4: [5]}.items():
        expected[child, ancestors] = True
    assert torch.equal(anc, expected)


def test_consistent_target_hand_computed():
    anc = ancestor_matrix(EDGES, 6)
    cases = [  # (y, requested target, consistent target)
        ([0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]),  # turn a on: b, c on
        ([1, 1, 1, 1, 0, 0], [1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]),  # turn c off: a, b, d off
        ([0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 0, 0]),  # d on -> c on; f off -> e off
        (
            [0, 1, 1, 0, 0, 0],
            [1, 0, 1, 0, 0, 0],
            [0, 0, 1, 0, 0, 0],
        ),  # conflict: a on under b off -> off first
        ([0, 0, 1, 1, 1, 1], [1, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]),  # a on -> b on (c already on)
        ([1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]),  # all-zero is consistent as asked
    ]
    y = torch.tensor([c[0] for c in cases], dtype=torch.float)
    target = torch.tensor([c[1] for c in cases], dtype=torch.float)
    expected = torch.tensor([c[2] for c in cases], dtype=torch.float)
    assert torch.equal(consistent_targets(y, target, anc), expected)


def walk_reference(y: list[int], target: list[int], edges, n: int) -> list[int]:
    """The rule written per example with explicit graph walks (no closure matrix)."""
    parents = {i: [p for c, p in edges if c == i] for i in range(n)}
    children = {i: [c for c, p in edges if p == i] for i in range(n)}

    def reach(start, nbrs):
        seen, stack = set(), list(start)
        while stack:
            v = stack.pop()
            for u in nbrs[v]:
                if u not in seen:
                    seen.add(u)
                    stack.append(u)
        return seen

    off = {i for i in range(n) if target[i] != y[i] and target[i] == 0}
    on = {i for i in range(n) if target[i] != y[i] and target[i] == 1}
    forced_off = off | reach(off, children)
    kept_on = on - forced_off
    forced_on = kept_on | reach(kept_on, parents)
    return [0 if i in forced_off else 1 if i in forced_on else y[i] for i in range(n)]


def test_consistent_target_matches_graph_walk_and_is_consistent():
    n = 9
    edges = [(0, 1), (1, 2), (3, 2), (4, 2), (5, 4), (6, 7), (8, 7), (8, 1)]  # a DAG, 8 has two parents
    anc = ancestor_matrix(edges, n)
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(400, n, generator=g) < 0.4).float()
    y = y[graph_violations(y, anc) == 0]  # consistent ground truths
    target = (y - (torch.rand(y.shape, generator=g) < 0.3).float()).abs()
    keep = (target != y).any(dim=1)
    y, target = y[keep], target[keep]
    assert y.shape[0] > 50
    got = consistent_targets(y, target, anc)
    ref = torch.tensor(
        [walk_reference(a, b, edges, n) for a, b in zip(y.int().tolist(), target.int().tolist())]
    )
    assert torch.equal(got, ref.float())
    assert (graph_violations(got, anc) == 0).all()
    consistent_request = graph_violations(target, anc) == 0
    assert torch.equal(got[consistent_request], target[consistent_request])  # a consistent request is kept


class Linear(nn.Module):
    def __init__(self, n_out: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(n_out, 48, generator=g) * 0.5, requires_grad=False)
        self.c = nn.Parameter(torch.randn(n_out, generator=g) * 0.5, requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.w.t() + self.c


@pytest.mark.parametrize("norm,eps,step", [("linf", 0.5, 0.01), ("l2", 4.0, 0.05)])
def test_sema_reaches_consistent_targets_on_linear_model(tmp_path, norm, eps, step):
    t = ml_task()
    path = graph_file(tmp_path, "- [a, b]\n- [b, c]\n- [d, c]\n- [e, f]\n")
    att = sema(t, graph_path=path, norm=norm, eps=eps, step_size=step, max_iters=300)
    model = Linear(6, seed=1).eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(600, 3, 4, 4, generator=g)
    with torch.no_grad():
        y = t.predict(model(x))
    ok = graph_violations(y, att.ancestors) == 0  # images the model labels consistently
    x, y = x[ok][:40], y[ok][:40]
    target = t.sample_targets(y, g)  # 3 random bit flips: mostly inconsistent requests
    x_adv = att(model, x, y, target)
    delta = (x_adv - x).flatten(1)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    bound = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (bound <= eps + 1e-5).all()
    with torch.no_grad():
        pred = t.predict(model(x_adv))
    goal = att.consistent_target(y, target)
    reached = (pred == goal).all(dim=1)
    assert reached.float().mean() >= 0.9
    assert torch.equal(att.batch_stats["consistent_reached"].bool(), reached)
    assert (graph_violations(pred[reached], att.ancestors) == 0).all()  # what it reaches is consistent
    iters = att.batch_stats["iters"]
    assert ((iters[reached] >= 1) & (iters[reached] <= 300)).all() and (iters[~reached] == 300).all()
    # ASR is against the requested target: reached but inconsistent requests do not count
    changed = (goal != target).any(dim=1)
    assert torch.equal(att.batch_stats["target_changed"].bool(), changed)
    assert changed.any() and not t.success(model(x_adv), y, target)[reached & changed].any()
    assert torch.equal(t.success(model(x_adv), y, target)[reached], ~changed[reached])


def test_sema_without_graph_attacks_the_requested_target():
    t = ml_task()
    att = sema(t, eps=0.5, step_size=0.01)
    assert not att.ancestors.any()
    model = Linear(6, seed=3).eval()
    x = torch.rand(30, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        y = t.predict(model(x))
    target = t.sample_targets(y, torch.Generator().manual_seed(5))
    x_adv = att(model, x, y, target)
    assert t.success(model(x_adv), y, target).float().mean() >= 0.9
    assert (att.batch_stats["target_changed"] == 0).all()


def test_bad_graphs_fail_clearly(tmp_path):
    t = ml_task()
    with pytest.raises(ConfigError, match="cycle"):
        sema(t, graph_path=graph_file(tmp_path, "- [a, b]\n- [b, c]\n- [c, a]\n"))
    with pytest.raises(ConfigError, match="unknown label 'zz'"):
        sema(t, graph_path=graph_file(tmp_path, "- [a, zz]\n"))
    with pytest.raises(ConfigError, match="unknown label 9"):
        sema(t, graph_path=graph_file(tmp_path, "- [0, 9]\n"))
    with pytest.raises(ConfigError, match="implies itself"):
        sema(t, graph_path=graph_file(tmp_path, "- [b, b]\n"))
    with pytest.raises(ConfigError, match=r"expected \[child, parent\]"):
        sema(t, graph_path=graph_file(tmp_path, "- [a, b, c]\n"))
    with pytest.raises(ConfigError, match="no file"):
        sema(t, graph_path=str(tmp_path / "missing.yaml"))
    ecoc = TASKS.get("ecoc")
    info = DataInfo(4, (3, 4, 4), list("wxyz"), (0.0,) * 3, (1.0,) * 3)
    with pytest.raises(ConfigError, match="multi-label"):
        sema(ecoc(parse_config(ecoc.Config, {"name": "ecoc", "code_length": 4}, "task"), info))


def test_bundled_nuswide_graph_names_real_concepts():
    assert len(NUSWIDE) == 81
    edges = load_label_graph("nuswide_concepts", NUSWIDE)
    assert len(edges) >= 25
    anc = ancestor_matrix(edges, 81, NUSWIDE)
    i = NUSWIDE.index
    assert anc[i("cars"), i("vehicle")] and anc[i("dog"), i("animal")] and not anc[i("vehicle"), i("cars")]
    # json works too, with indices
    assert load_label_graph("digits_synthetic", [str(d) for d in range(10)]) == [(1, 7), (7, 9), (3, 8)]


def test_graph_from_the_data_module_when_no_file_is_given(tmp_path):
    class Data:
        label_implications = [("a", "b"), ("b", "c")]

    t = ml_task()
    att = sema(t)
    att.prepare(nn.Identity(), Data())
    assert att.ancestors[0, 1] and att.ancestors[0, 2] and att.ancestors.sum() == 3
    explicit = sema(t, graph_path=graph_file(tmp_path, "- [d, e]\n"))
    explicit.prepare(nn.Identity(), Data())  # an explicit file wins over the dataset's graph
    assert explicit.ancestors[3, 4] and explicit.ancestors.sum() == 1
