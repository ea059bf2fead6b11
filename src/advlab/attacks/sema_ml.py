"""SemA-ML: semantically consistent multi-label attack (Mahmood & Elhamifar, "Semantic-aware multi-label
adversarial attacks", CVPR 2024; precursor arXiv 2207.05137), the JMA paper's reference [11].

The labels are related by a knowledge graph of implications ``child => parent`` (NUS-WIDE: 'cars' =>
'vehicle', 'dog' => 'animal'): a consistent label vector has every ancestor of a present label present, i.e.
an absent label has all its descendants absent. An attack that flips only the requested labels produces
vectors a semantic check would reject; SemA-ML therefore attacks the *consistent* target derived from the
request:

- the attacked labels are those the requested target changes w.r.t. the ground truth ``y``;
- every label turned off turns its descendants off; every label turned on turns its ancestors on; every other
  label keeps its value in ``y``;
- conflicts (a label asked on below a label asked off, so that "off" forces it off while "on" forces it on)
  are resolved **off-first**: the descendants of the labels turned off are off whatever the request says,
  and only the labels asked on that survive this (none of their ancestors is forced off) turn their
  ancestors on. This is deterministic, and the result is consistent with the graph whenever ``y`` is (the
  ancestors of a surviving "on" label are never forced off, since that would force the label itself off).

All of this is batched with the transitive closure of the graph (``ancestors[i, j]``: ``j`` is a strict
ancestor of ``i``): descendants of the "off" set are ``off @ ancestors^T > 0``, ancestors of the "on" set are
``on @ ancestors > 0``.

The perturbation is then found by a norm-bounded gradient attack toward the consistent target ``t*`` (signs
``s = 2 t* - 1``, raw outputs ``z``), minimising

    sum_{j attacked} max(0, kappa - s_j z_j)  +  keep_weight * sum_{j not attacked} max(0, kappa - s_j z_j)

(``attacked`` now meaning ``t*_j != y_j``: the hinge pushes those labels across the 0.5 threshold and only
acts on the others when they drift to the wrong side) by projected steps (``norm=linf``: signed gradient
steps of ``step_size`` inside the ``eps`` L_inf ball; ``norm=l2``: normalised gradient steps inside the
``eps`` L2 ball), always inside the image box, for at most ``max_iters`` (300, the official code's setting
that the JMA paper keeps). Each example stops at the first iterate whose decision equals ``t*``; ``iters`` is
the number of steps it took (``max_iters`` for a failure, whose last iterate is returned). Per-example
statistics: ``target_changed`` (the consistent target differs from the requested one) and
``consistent_reached`` (the decision equals the consistent target).

Success (``attack/asr``) is measured by the evaluation against the *requested* target: when the requested
vector is itself inconsistent (random bit flips on a hierarchical label set), reaching ``t*`` cannot count as
success, which is why SemA-ML has ASR 0 in the JMA paper's random-flip tables, while on consistent requests
(training-set vectors, all-zero) ``t* = target`` and it can succeed. With no graph ``t* = target`` and this
is a plain hinge-loss PGD attack.

The graph comes from ``graph_path`` (YAML/JSON: a list of ``[child, parent]`` pairs of label names or indices,
optionally under the key ``implications``; a bare name such as ``nuswide_concepts`` selects a file shipped in
``advlab/data/label_graphs/``), or, without one, from the data module's ``label_implications``
attribute when it has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import SemAMLConfig  # noqa: F401
from advlab.errors import ConfigError
from advlab.tasks.multilabel import MultiLabel

BUNDLED_GRAPHS = Path(__file__).resolve().parent.parent / "data" / "label_graphs"


# ---- the label graph ---------------------------------------------------------------------------------------
def resolve_graph_path(path: str) -> Path:
    """``path`` as given, or a bundled graph (``advlab/data/label_graphs/<path>[.yaml|.json]``)."""
    given = Path(path).expanduser()
    if given.is_file():
        return given
    for name in (path, f"{path}.yaml", f"{path}.json"):
        bundled = BUNDLED_GRAPHS / name
        if bundled.is_file():
            return bundled
    shipped = sorted(p.stem for p in BUNDLED_GRAPHS.glob("*.yaml")) if BUNDLED_GRAPHS.is_dir() else []
    raise ConfigError(
        f"attack.graph_path: no file '{path}' (relative paths are from the working directory; bundled graphs: "
        f"{shipped})"
    )


def _pairs(raw: Any, source: str) -> list[tuple[Any, Any]]:
    if isinstance(raw, dict) and set(raw) == {"implications"}:
        raw = raw["implications"]
    if not isinstance(raw, list):
        raise ConfigError(f"attack.graph_path: {source} must hold a list of [child, parent] pairs")
    out = []
    for k, item in enumerate(raw):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ConfigError(f"attack.graph_path: {source} entry {k} is {item!r}, expected [child, parent]")
        out.append((item[0], item[1]))
    return out


def label_edges(raw: Any, class_names: list[str], source: str = "the graph") -> list[tuple[int, int]]:
    """``[(child, parent)]`` label indices from pairs of label names or indices; unknown labels and
    self-implications are clear errors."""
    index = {name: i for i, name in enumerate(class_names)}
    n = len(class_names)

    def to_index(v: Any) -> int:
        if isinstance(v, str) and v in index:
            return index[v]
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n:
            return v
        raise ConfigError(
            f"attack.graph_path: unknown label {v!r} in {source}; use one of the dataset's {n} label names "
            f"(e.g. {class_names[:6]}) or an index in [0, {n})"
        )

    edges = []
    for child, parent in _pairs(raw, source):
        c, p = to_index(child), to_index(parent)
        if c == p:
            raise ConfigError(f"attack.graph_path: label {class_names[c]!r} implies itself in {source}")
        edges.append((c, p))
    return edges


def load_label_graph(path: str, class_names: list[str]) -> list[tuple[int, int]]:
    file = resolve_graph_path(path)
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"attack.graph_path: {file} is not valid YAML/JSON: {e}") from e
    return label_edges(raw, class_names, str(file))


def ancestor_matrix(edges: list[tuple[int, int]], n: int, class_names: list[str] | None = None) -> Tensor:
    """Transitive closure: ``[n, n]`` bool, ``[i, j]`` true when ``j`` is a strict ancestor of ``i`` (reachable
    by child => parent edges). A cycle is a :class:`ConfigError` naming its labels."""
    reach = torch.zeros(n, n, dtype=torch.bool)
    for c, p in edges:
        reach[c, p] = True
    while True:  # repeated squaring: paths of length <= 2^k after k rounds
        step = reach | ((reach.float() @ reach.float()) > 0)
        if torch.equal(step, reach):
            break
        reach = step
    cyclic = reach.diagonal().nonzero().squeeze(1).tolist()
    if cyclic:
        names = [class_names[i] if class_names else i for i in cyclic]
        raise ConfigError(
            f"attack.graph_path: the label implications have a cycle through {names}; an implication graph "
            "must be acyclic (child => parent)"
        )
    return reach


def consistent_targets(y: Tensor, target: Tensor, ancestors: Tensor) -> Tensor:
    """The consistent target of each requested ``target`` (see the module docstring), batched:
    labels turned off take their descendants off, then labels turned on that are not forced off take their
    ancestors on; the rest keep ``y``."""
    anc = ancestors.to(device=y.device, dtype=torch.float32)
    attacked = target != y
    off = attacked & (target == 0)
    on = attacked & (target == 1)
    forced_off = off | ((off.float() @ anc.T) > 0)  # [b, j] = any_i off_i and j below i
    kept_on = on & ~forced_off
    forced_on = kept_on | ((kept_on.float() @ anc) > 0)  # [b, j] = any_i on_i and j above i
    out = y.clone()
    out[forced_off] = 0
    out[forced_on] = 1
    return out


def graph_violations(labels: Tensor, ancestors: Tensor) -> Tensor:
    """Per example, the number of (label, ancestor) pairs with the label on and the ancestor off."""
    on = labels.bool()
    anc = ancestors.to(labels.device)
    return (on[:, :, None] & anc[None] & ~on[:, None, :]).sum(dim=(1, 2))


# ---- the attack --------------------------------------------------------------------------------------------
@ATTACKS.register("sema_ml")
class SemAML(Attack):
    paper = "Mahmood & Elhamifar, Semantic-Aware Multi-Label Adversarial Attacks, CVPR 2024"
    url = "https://openaccess.thecvf.com/content/CVPR2024/html/Mahmood_Semantic-Aware_Multi-Label_Adversarial_Attacks_CVPR_2024_paper.html"
    Config = SemAMLConfig

    def __init__(self, params: Any, task: Any):
        super().__init__(params, task)
        if not isinstance(task, MultiLabel):
            raise ConfigError(
                f"attack=sema_ml works on multi-label tasks (task.name=multilabel), not "
                f"'{getattr(task, 'registered_name', type(task).__name__)}'"
            )
        self.norm = params.norm
        names = list(task.info.class_names)
        n = task.num_outputs
        edges = load_label_graph(params.graph_path, names) if params.graph_path else []
        self.ancestors = ancestor_matrix(edges, n, names)

    def prepare(self, model: nn.Module, data: Any) -> None:
        """Without ``graph_path``, use the dataset's implications when it declares some."""
        graph = getattr(data, "label_implications", None)
        if self.params.graph_path or graph is None:
            return
        names = list(self.task.info.class_names)
        edges = label_edges(graph() if callable(graph) else graph, names, "the dataset's label_implications")
        self.ancestors = ancestor_matrix(edges, self.task.num_outputs, names)

    def consistent_target(self, y: Tensor, target: Tensor) -> Tensor:
        return consistent_targets(y, target, self.ancestors)

    def _step(self, delta: Tensor, grad: Tensor) -> Tensor:
        p = self.params
        dims = (-1,) + (1,) * (delta.dim() - 1)
        if p.norm == "linf":
            return (delta - p.step_size * grad.sign()).clamp(-p.eps, p.eps)
        g_norm = grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(dims)
        delta = delta - p.step_size * grad / g_norm
        d_norm = delta.flatten(1).norm(dim=1).view(dims)
        return delta * (p.eps / d_norm.clamp(min=p.eps))

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p, task = self.params, self.task
        assert target is not None
        task.check_target(y, target)
        goal = self.consistent_target(y.float(), target.float())
        self.batch_stats["target_changed"] = (goal != target.float()).any(dim=1).float()
        code = task.signs(goal).to(x.dtype)
        weight = torch.where(goal != y.float(), 1.0, p.keep_weight).to(x.dtype)
        n = x.shape[0]
        iters = torch.full((n,), float(p.max_iters), device=x.device)
        reached = torch.zeros(n, device=x.device)
        delta = torch.zeros_like(x)
        best = x.clone()
        active = torch.arange(n, device=x.device)
        for it in range(p.max_iters + 1):
            x_cur = (x[active] + delta[active]).clamp(0, 1).requires_grad_(True)
            z = model(x_cur)
            hit = (task.predict(z.detach()) == goal[active]).all(dim=1)
            if bool(hit.any()):
                best[active[hit]] = x_cur.detach()[hit]
                iters[active[hit]] = it
                reached[active[hit]] = 1.0
            keep = ~hit
            if it == p.max_iters:
                best[active[keep]] = x_cur.detach()[keep]
                break
            if not bool(keep.any()):
                break
            hinge = torch.relu(p.confidence - code[active] * z) * weight[active]
            (grad,) = torch.autograd.grad(hinge[keep].sum(), x_cur)
            active, grad = active[keep], grad[keep]
            new = self._step(delta[active], grad)
            delta[active] = (x[active] + new).clamp(0, 1) - x[active]  # stay in the image box
        self.batch_stats["iters"] = iters
        self.batch_stats["consistent_reached"] = reached
        return best
