"""AMI, Attacks Meet Interpretability (Tao, Ma, Liu & Zhang, NeurIPS 2018): attribute-steered detection of
adversarial samples, SemanticAdv's fourth defense (Figure 5).

1. **Attribute witnesses** of one layer of the victim (``defense.layer``; a neuron is a channel of a
   convolutional layer, its activation averaged over space, or a unit of a linear one), per attribute ``a``
   from two kinds of attribute-changed image pairs (:func:`attribute_pairs`):

   - *substitution*: an image ``x`` and ``x`` with attribute ``a`` changed (everything else kept);
   - *preservation*: ``x`` and ``x`` with attribute ``a`` kept and every other attribute changed.

   With ``v_j`` the neuron's value and ``s_j`` its standard deviation over the images ``x``, a neuron *changes*
   on a pair when ``|v_j(x) - v_j(x_pair)| > change_threshold * s_j``. Neuron ``j`` is a witness of ``a``
   when it changes on at least ``consistency`` of the substitution pairs (it follows the attribute) **and**
   stays put on at least ``consistency`` of the preservation pairs (it does not follow the rest): the
   intersection of the two sets (:func:`select_witnesses`). The witnesses of the layer are the union over
   the attributes.
2. **Attribute-steered model** (:class:`SteeredModel`): a frozen copy of the victim whose chosen layer's
   output is multiplied per neuron by ``strengthen`` (witnesses) or ``weaken`` (every other neuron of that
   layer); nothing else changes.
3. **Detector** (``detection``): AMI flags an input on which the two models disagree.

   - ``consistency`` (default; how SemanticAdv evaluates AMI on face verification, Figure 5): the consistency
     score is the cosine similarity between the victim's and the steered model's outputs (face
     representations); an input is flagged when it is below the threshold that flags ``benign_fpr`` (10%) of
     the clean ``pair_split`` images. For unit embeddings this is a verification decision: the steered
     embedding is not verified as the original one at the distance ``sqrt(2 - 2 cos)`` of that threshold.
   - ``decision``: flagged when the steered model's task decision differs,
     ``not task.correct(steered(x), task.predict(victim(x)))`` (classification: another label, AMI's own
     rule; verification: not verified as the original embedding at the task's threshold, which the
     SemanticAdv pipeline sets to the first FPR's).

   :meth:`AMIDefense.detector_score` is that flag (1 / 0), so its means are the detection rate on
   adversarial inputs and the false-positive rate on clean ones.

The defense does not change what is scored (``wrap`` returns the victim); the pipeline calls
:meth:`AMIDefense.prepare` with the trained victim and the data before attacking. The pairs come from the
data's exact attribute edits (``counterfactuals``, e.g. ``dataset=synthfaces``); AMI itself builds them on
real faces by pasting landmark-located face parts between images.

How advlab differs from the paper, and why: AMI locates attributes with face landmarks and substitutes image
parts (eyes, nose, mouth) between faces of VGG-Face's training set; advlab uses the dataset's attribute edits
(the same image with one attribute flipped, or with all other attributes flipped), which change exactly one
attribute without pasting artefacts. The numeric rules (``change_threshold`` in units of the neuron's
standard deviation, ``consistency``, multiplicative ``strengthen`` / ``weaken``) are advlab's concrete
reading of "changes significantly" / "does not change" and of strengthening / weakening.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from advlab.defenses.base import DEFENSES, Defense
from advlab.defenses.configs import AMIConfig  # noqa: F401
from advlab.errors import ConfigError
from advlab.utils import frozen


def neuron_values(activation: Tensor) -> Tensor:
    """``[N, C, H, W]`` -> ``[N, C]`` (a channel's mean over space) or ``[N, F]`` unchanged."""
    return activation.flatten(2).mean(2) if activation.dim() > 2 else activation


def select_witnesses(
    base: Tensor,
    substituted: Tensor,
    preserved: Tensor,
    scale: Tensor,
    change_threshold: float,
    consistency: float,
) -> Tensor:
    """Witness mask ``[J]`` of one attribute from neuron values ``[N, J]`` of the images, of their
    attribute-substituted and of their attribute-preserved versions; ``scale`` ``[J]`` is each neuron's standard
    deviation over the images."""
    tau = change_threshold * scale.clamp(min=1e-12)
    changes = ((substituted - base).abs() > tau).float().mean(0) >= consistency
    stays = ((preserved - base).abs() <= tau).float().mean(0) >= consistency
    return changes & stays


def find_module(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if name not in modules:
        names = ", ".join(n for n in modules if n)
        raise ConfigError(f"defense.layer: the victim has no module '{name}'; its modules are: {names}")
    return modules[name]


@torch.no_grad()
def layer_neurons(model: nn.Module, layer: str, x: Tensor, batch: int = 256) -> Tensor:
    """Neuron values ``[N, J]`` of ``model``'s module ``layer`` on ``x``."""
    seen: list[Tensor] = []
    handle = find_module(model, layer).register_forward_hook(
        lambda m, i, out: seen.append(neuron_values(out))
    )
    try:
        for s in range(0, len(x), batch):
            model(x[s : s + batch])
    finally:
        handle.remove()
    return torch.cat(seen)


class SteeredModel(nn.Module):
    """A frozen copy of ``victim`` whose module ``layer`` outputs ``gain * output`` (``gain`` [J] per neuron)."""

    def __init__(self, victim: nn.Module, layer: str, gain: Tensor):
        super().__init__()
        self.model = copy.deepcopy(victim).eval().requires_grad_(False)
        self.register_buffer("gain", gain.float())
        self.layer = layer
        find_module(self.model, layer).register_forward_hook(self._steer)

    def _steer(self, module: nn.Module, inputs, out: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return out * self.gain.to(out).view(shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def attribute_pairs(data, split: str, attribute: int, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(images, substituted, preserved) for images ``index`` of ``split``: attribute ``attribute`` flipped, or
    kept with every other attribute flipped, rendered by the data's exact edits (``data.counterfactuals``)."""
    if not hasattr(data, "counterfactuals"):
        raise ConfigError(
            "defense=ami finds attribute witnesses from attribute-changed image pairs; the dataset has no exact "
            "attribute edits (counterfactuals); use dataset=synthfaces"
        )
    c = data.attributes(split)[index].float()
    sub, pres = c.clone(), 1 - c
    sub[:, attribute] = 1 - c[:, attribute]
    pres[:, attribute] = c[:, attribute]
    x = data.load_images(split, index)
    return x, data.counterfactuals(split, index, sub), data.counterfactuals(split, index, pres)


@DEFENSES.register("ami")
class AMIDefense(Defense):
    """AMI (Tao et al. 2018): attribute witnesses of one layer, the attribute-steered model, a disagreement flag."""

    Config = AMIConfig
    paper = (
        "Tao, Ma, Liu, Zhang, Attacks Meet Interpretability: Attribute-steered Detection of Adversarial "
        "Samples, NeurIPS 2018"
    )
    url = "https://arxiv.org/abs/1810.11580"
    detector_flags = True  # the detector score is a 0/1 flag: its means are rates

    def __init__(self, params: AMIConfig, task):
        super().__init__(params, task)
        self.steered: SteeredModel | None = None
        self.witnesses: Tensor | None = None
        self.witnesses_per_attribute: dict[str, Tensor] = {}
        self.consistency_threshold: float | None = None

    def wrap(self, victim: nn.Module) -> nn.Module:
        """The victim itself (AMI detects, it does not change what is scored), once the witnesses are found."""
        if self.steered is None:
            raise ConfigError(
                "defense=ami is a detector fitted on the trained victim (prepare) and reported by "
                "pipeline=semantic_adv; this pipeline does not fit it"
            )
        return victim

    def fit(self, victim: nn.Module, pairs: dict[str, tuple[Tensor, Tensor, Tensor]]) -> None:
        """Witnesses from ``{attribute: (images, substituted, preserved)}`` and the steered model."""
        p = self.params
        with frozen(victim):
            per_attr = {}
            for name, (x, sub, pres) in pairs.items():
                base = layer_neurons(victim, p.layer, x)
                per_attr[name] = select_witnesses(
                    base,
                    layer_neurons(victim, p.layer, sub),
                    layer_neurons(victim, p.layer, pres),
                    base.std(0),
                    p.change_threshold,
                    p.consistency,
                )
        self.witnesses_per_attribute = per_attr
        self.witnesses = torch.stack(list(per_attr.values())).any(0)
        gain = torch.where(self.witnesses, torch.tensor(p.strengthen), torch.tensor(p.weaken))
        self.steered = SteeredModel(victim, p.layer, gain)

    def prepare(self, victim: nn.Module, data, device) -> dict:
        """Draw ``pairs_per_attribute`` images of ``pair_split`` per attribute, find the witnesses, build the
        steered model; returns a summary for ``results.json``."""
        p = self.params
        names = list(data.attribute_names)
        chosen = names if p.attributes is None else list(p.attributes)
        unknown = [a for a in chosen if a not in names]
        if unknown:
            raise ConfigError(
                f"defense.attributes: {unknown} are not dataset attributes ({', '.join(names)})"
            )
        n = len(data.attributes(p.pair_split))
        gen = torch.Generator().manual_seed(0)
        pairs = {}
        for a in chosen:
            index = torch.randperm(n, generator=gen)[: p.pairs_per_attribute]
            pairs[a] = tuple(t.to(device) for t in attribute_pairs(data, p.pair_split, names.index(a), index))
        self.fit(victim, pairs)
        if p.detection == "consistency":
            x = data.load_images(p.pair_split, torch.arange(n)).to(device)
            with torch.no_grad():
                c = torch.cat([self.consistency(victim, x[s : s + 256]) for s in range(0, n, 256)])
            # flagged when below: the benign_fpr quantile flags that share of the clean images
            self.consistency_threshold = float(torch.quantile(c.double(), p.benign_fpr))
        return {
            "layer": p.layer,
            "detection": p.detection,
            "consistency_threshold": self.consistency_threshold,
            "neurons": int(self.witnesses.numel()),
            "witnesses": int(self.witnesses.sum()),
            "witnesses_per_attribute": {a: int(w.sum()) for a, w in self.witnesses_per_attribute.items()},
        }

    @property
    def detector(self):
        """:meth:`detector_score` once :meth:`prepare` / :meth:`fit` ran."""
        return self.detector_score if self.steered is not None else None

    @torch.no_grad()
    def consistency(self, victim: nn.Module, x: Tensor) -> Tensor:
        """AMI's consistency score per image: cosine similarity of the victim's and the steered outputs."""
        self.steered.to(x.device)
        return torch.nn.functional.cosine_similarity(victim(x).flatten(1), self.steered(x).flatten(1), dim=1)

    @torch.no_grad()
    def detector_score(self, victim: nn.Module, x: Tensor) -> Tensor:
        """1 where the steered model disagrees with the victim on ``x`` (``detection``), else 0 (per image)."""
        if self.steered is None:
            raise ConfigError(
                "defense=ami: the detector needs the witnesses; call prepare(victim, data) first"
            )
        if self.params.detection == "consistency":
            if self.consistency_threshold is None:
                raise ConfigError("defense=ami: the consistency threshold is set by prepare(victim, data)")
            return (self.consistency(victim, x) < self.consistency_threshold).float()
        reference = self.task.predict(victim(x))
        self.steered.to(x.device)
        return (~self.task.correct(self.steered(x), reference)).float()
