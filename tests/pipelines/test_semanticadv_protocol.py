"""SemanticAdv's protocol: Worst / Best / Average, thresholds in the official unit, per-G-FPR settings, target
ids for transfer, the generator's official split points, the official pre-step term, and an end-to-end run with
two transfer targets of one architecture, the StrawMan and a defense."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import make_cfg
from test_semanticadv import SEMANTIC, TINY, semantic_adv, tiny_generator

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.generators.stargan import AttributeGenerator, StarGANGenerator
from advlab.pipelines.semantic_adv import (
    SemanticAdvPipelineConfig,
    given_thresholds,
    setting_for,
    success_rates,
    target_ids,
)
from advlab.registry import parse_config


def pipeline_config(**node) -> SemanticAdvPipelineConfig:
    return parse_config(SemanticAdvPipelineConfig, {"name": "semantic_adv", **node}, "pipeline")


def test_worst_best_average_by_hand():
    ok = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.bool)
    r = success_rates(ok)
    assert r["average"] == pytest.approx(6 / 12)
    assert r["best"] == pytest.approx(3 / 4)  # one attribute succeeds
    assert r["worst"] == pytest.approx(1 / 4)  # every attribute succeeds


def test_table_b_thresholds_are_squared_distances():
    # the official code compares MSE(f(x), f(t)) * 256 = ||f(x) - f(t)||^2 with 1.244 / 1.048 / 0.597
    p = pipeline_config(thresholds=[1.244, 1.048, 0.597], threshold_distance="squared_l2")
    assert given_thresholds(p) == pytest.approx([math.sqrt(1.244), math.sqrt(1.048), math.sqrt(0.597)])
    assert given_thresholds(pipeline_config(thresholds=[1.2, 1.0, 0.6])) == pytest.approx([1.2, 1.0, 0.6])
    with pytest.raises(ConfigError, match="pipeline.thresholds"):
        pipeline_config(thresholds=[2.5, 1.0, 0.6])  # > 2 is no L2 distance between unit vectors
    assert pipeline_config(thresholds=[2.5, 1.0, 0.6], threshold_distance="squared_l2")
    with pytest.raises(ConfigError, match="threshold_distance"):
        pipeline_config(threshold_distance="cosine")


def test_per_gfpr_settings():
    p = pipeline_config(
        per_fpr=[
            {"fpr": 1e-3, "steps": 500, "lr": 0.01},
            {"fpr": 3e-4, "steps": 500, "lr": 0.01},
            {"fpr": 1e-4},
        ]
    )
    assert setting_for(p, 1e-3) == {"steps": 500, "lr": 0.01}
    assert setting_for(p, 1e-4) == {}  # the attack's own (200 steps, lr 0.05)
    with pytest.raises(ConfigError, match=r"per_fpr\[0\].fpr"):
        pipeline_config(per_fpr=[{"fpr": 0.01, "steps": 5}])
    with pytest.raises(ConfigError, match=r"per_fpr\[0\].steps"):
        pipeline_config(per_fpr=[{"fpr": 1e-3, "steps": 0}])


def test_transfer_targets_have_unique_ids():
    nodes = [
        {"name": "face_resnet50"},
        {"name": "face_resnet50"},
        {"name": "face_resnet101", "label": "R-101-C"},
    ]
    assert target_ids(nodes) == ["face_resnet50_0", "face_resnet50_1", "R-101-C"]
    assert target_ids([{"name": "smallcnn"}]) == ["smallcnn"]
    with pytest.raises(ConfigError, match="used twice"):
        pipeline_config(transfer_victims=[{"name": "a", "label": "X"}, {"name": "b", "label": "X"}])


@pytest.mark.parametrize(
    "layer, channels, scale, last",
    [
        ("f-2", 4, 4, torch.nn.InstanceNorm2d),  # 2nd down-sampling conv + norm, before its ReLU
        ("f-1", 4, 4, torch.nn.Module),  # after the first residual block
        ("f0", 4, 4, torch.nn.Module),  # after the last residual block
        ("f1", 2, 2, torch.nn.InstanceNorm2d),  # 1st up-sampling + norm, before its ReLU
        ("f2", 1, 1, torch.nn.InstanceNorm2d),  # 2nd up-sampling + norm, before its ReLU
    ],
)
def test_official_feature_split_points(layer, channels, scale, last):
    torch.manual_seed(0)
    net = StarGANGenerator(3, conv_dim=4, repeat_num=2).eval()
    g = AttributeGenerator(net, layer)
    x, c = torch.rand(2, 3, 16, 16), torch.rand(2, 3).round()
    f = g.encode(x, c)
    assert f.shape == (2, 4 * channels, 16 // scale, 16 // scale)
    assert isinstance(net.main[g.split - 1], last)
    if last is torch.nn.InstanceNorm2d:  # split before the ReLU: the features have negative values
        assert isinstance(net.main[g.split], torch.nn.ReLU) and (f < 0).any()
    assert torch.allclose(g.decode(f), g(x, c), atol=1e-6)
    if layer == "f0":
        assert g.split == AttributeGenerator(net, "last_res").split


def test_official_pre_step_term_keeps_x_prime_near_the_source():
    torch.manual_seed(0)
    gen = tiny_generator(c_dim=3)
    x, c = torch.rand(2, 3, 16, 16), torch.rand(2, 3).round()
    far = {}
    for w in (0.0, 1.0):
        atk = semantic_adv(recon_steps=30, recon_image_weight=w)
        far[w] = float((atk.reconstruct(gen, x, c) - x).pow(2).mean())
    assert far[1.0] < far[0.0]


@pytest.mark.slow
def test_protocol_end_to_end(tmp_path):
    from advlab.runner import run

    targets = "+pipeline.transfer_victims=[{label: A, name: smallcnn, width: 4, hidden: 16}, {label: B, name: smallcnn, width: 6, hidden: 16}]"
    per_fpr = "pipeline.per_fpr=[{fpr: 0.05, steps: 2, lr: 0.01}]"
    # seed=1: its own victim and generator, so the order of the tests does not decide what is cached
    res = run(
        make_cfg("experiment=semanticadv_synth", *TINY, *SEMANTIC, targets, per_fpr, "seed=1"), tmp_path / "f"
    )
    m, sa = res["metrics"], res["semantic_adv"]
    for g in ("5e-2", "1e-2"):
        for t in ("5e-2", "1e-2"):
            worst, avg, best = (m[f"attack/asr{k}_g{g}_t{t}"] for k in ("_worst", "", "_instance"))
            assert worst <= avg <= best
    assert (m["attack/asr_worst"], m["attack/asr"], m["attack/asr_instance"]) == (
        m["attack/asr_worst_g5e-2_t5e-2"],
        m["attack/asr_g5e-2_t5e-2"],
        m["attack/asr_instance_g5e-2_t5e-2"],
    )
    for ref in ("source", "recon", "edit_best"):
        assert 0 <= m[f"attack/ref_{ref}"] <= 1 and f"attack/ref_{ref}_t1e-2" in m
    assert m["attack/ref_source"] == m["clean/false_accept"]
    assert m["attack/iters_g5e-2"] <= 2 < 5  # per_fpr: 2 steps at G-FPR 5e-2, the attack's 5 at 1e-2
    assert sa["settings"] == {"5e-2": {"steps": 2, "lr": 0.01}, "1e-2": {}}
    # two targets of one architecture, reported separately
    assert (
        set(sa["transfer"]) == {"A", "B"}
        and "transfer/asr_A_g5e-2_t5e-2" in m
        and "transfer/asr_B_g1e-2_t1e-2" in m
    )
    assert sa["self_transfer"]["5e-2"]["5e-2"] in (1.0,) or math.isnan(sa["self_transfer"]["5e-2"]["5e-2"])
    assert (tmp_path / "f" / "semanticadv_pairs_g5e-2.png").is_file()
    # StrawMan (C&W on G(x', c_new)) behind 4-bit squeezing with the detector score
    res2 = run(
        make_cfg(
            "experiment=semanticadv_synth", *TINY, "attack=cw_l2", "attack.targeted=true", "attack.steps=3",
            "attack.binary_search_steps=1", "pipeline.strawman=true", "pipeline.strawman_recon_steps=2",
            "+pipeline.transfer_victims=[]", "defense=input_transform", "defense.transform=squeeze",
            "defense.detector=true", "defense.detector_outputs=raw",
        ),
        tmp_path / "s",
    )  # fmt: skip
    assert res2["semantic_adv"]["attributes"] == [
        "Blond_Hair",
        "Eyeglasses",
        "Smiling",
        "Bangs",
        "Pale_Skin",
        "Chubby",
    ]
    assert res2["metrics"]["defense/detector_clean"] >= 0 and res2["metrics"]["defense/detector_adv"] >= 0
    assert "attack/ref_edit_best" in res2["metrics"]
    # AMI (Fig. 5's fourth defense): witnesses on the verifier, detection rates as metrics
    res3 = run(
        make_cfg("experiment=semanticadv_synth_ami", *TINY, *SEMANTIC, "defense.layer=net.9",
                 "defense.pairs_per_attribute=4", "seed=1"),
        tmp_path / "ami",
    )  # fmt: skip
    m3 = res3["metrics"]
    for key in ("defense/detection_rate_all", "defense/false_positive_rate", "defense/detector_adv"):
        assert 0 <= m3[key] <= 1, key
    assert m3["defense/detection_rate_all"] == m3["defense/detector_adv"]  # the mean of 0/1 flags
    assert res3["defense"]["layer"] == "net.9" and res3["defense"]["neurons"] == 16  # smallcnn width 8


def dissection_state_dict(c_dim: int = 17, cd: int = 8) -> dict[str, torch.Tensor]:
    """SemanticAdv's released ``200000-G.ckpt`` layout (``Face/stargan_model.py``'s Generator_dissection), by
    name and shape: convolutions without bias, affine instance norms with running statistics."""
    gen = torch.Generator().manual_seed(0)

    def norm(prefix, c):
        return {f"{prefix}.weight": torch.rand(c, generator=gen), f"{prefix}.bias": torch.rand(c, generator=gen),
                f"{prefix}.running_mean": torch.zeros(c), f"{prefix}.running_var": torch.ones(c),
                f"{prefix}.num_batches_tracked": torch.tensor(0)}  # fmt: skip

    def w(*shape):
        return torch.randn(*shape, generator=gen) * 0.1

    sd = {"conv1.weight": w(cd, 3 + c_dim, 7, 7), **norm("norm1", cd)}
    sd |= {"conv2_1.weight": w(2 * cd, cd, 4, 4), **norm("norm2_1", 2 * cd)}
    sd |= {"conv2_2.weight": w(4 * cd, 2 * cd, 4, 4), **norm("norm2_2", 4 * cd)}
    for k in range(1, 7):
        sd |= {f"res{k}.main.0.weight": w(4 * cd, 4 * cd, 3, 3), **norm(f"res{k}.main.1", 4 * cd)}
        sd |= {f"res{k}.main.3.weight": w(4 * cd, 4 * cd, 3, 3), **norm(f"res{k}.main.4", 4 * cd)}
    sd |= {"conv3_1.weight": w(4 * cd, 2 * cd, 4, 4), **norm("norm3_1", 2 * cd)}  # ConvTranspose2d: [in, out]
    sd |= {"conv3_2.weight": w(2 * cd, cd, 4, 4), **norm("norm3_2", cd)}
    sd["conv4.weight"] = w(3, cd, 7, 7)
    return sd


def test_released_generator_dissection_layout_loads(tmp_path):
    from advlab.generators.stargan import load_generator_state
    from advlab.victims.base import load_state_dict_file

    state = dissection_state_dict()
    path = tmp_path / "200000-G.ckpt"
    torch.save(state, path)
    net = StarGANGenerator(17, conv_dim=8, repeat_num=6)
    load_generator_state(net, load_state_dict_file(path), str(path))
    own = net.state_dict()
    assert len(own) == len(state)  # every key of the file is used
    assert torch.equal(own["main.0.weight"], state["conv1.weight"])
    assert torch.equal(own["main.12.main.3.weight"], state["res4.main.3.weight"])
    assert torch.equal(own["main.15.weight"], state["conv3_1.weight"])
    assert torch.equal(own["main.21.weight"], state["conv4.weight"])
    # the official forward, op by op on the file's tensors (h0 then f0)
    x, c = torch.rand(1, 3, 16, 16), torch.rand(1, 17).round()
    h = torch.cat([x * 2 - 1, c[:, :, None, None].expand(-1, -1, 16, 16)], 1)

    def inorm(t, p):
        return F.instance_norm(t, weight=state[f"{p}.weight"], bias=state[f"{p}.bias"])

    h = F.relu(inorm(F.conv2d(h, state["conv1.weight"], padding=3), "norm1"))
    h = F.relu(inorm(F.conv2d(h, state["conv2_1.weight"], stride=2, padding=1), "norm2_1"))
    h = F.relu(inorm(F.conv2d(h, state["conv2_2.weight"], stride=2, padding=1), "norm2_2"))
    for k in range(1, 7):
        r = F.relu(inorm(F.conv2d(h, state[f"res{k}.main.0.weight"], padding=1), f"res{k}.main.1"))
        h = h + inorm(F.conv2d(r, state[f"res{k}.main.3.weight"], padding=1), f"res{k}.main.4")
    h = F.relu(inorm(F.conv_transpose2d(h, state["conv3_1.weight"], stride=2, padding=1), "norm3_1"))
    h = F.relu(inorm(F.conv_transpose2d(h, state["conv3_2.weight"], stride=2, padding=1), "norm3_2"))
    ref = torch.tanh(F.conv2d(h, state["conv4.weight"], padding=3))
    with torch.no_grad():
        assert torch.allclose(net(x * 2 - 1, c), ref, atol=1e-5)


# ---- transfer targets with their own embedding size and thresholds ------------------------------------------


def test_transfer_targets_keep_their_own_embedding_size():
    """The released 256-d R-101-S generating, 512-d torchvision ResNets as targets, in one run's config."""
    from advlab.context import RunContext, build_spec
    from advlab.loggers.base import Tracker
    from advlab.pipelines.semantic_adv import target_spec
    from advlab.recorder import RunRecorder
    from advlab.tasks.base import TASKS
    from advlab.victims.base import VICTIMS

    cfg = make_cfg("experiment=semanticadv_celeba_transfer", "device=cpu")
    spec = build_spec(cfg)
    ctx = RunContext(cfg, spec, Path("unused"), {}, Tracker(None), RunRecorder(Path("unused"), Tracker(None)))
    assert spec.task.embedding_dim == 256 and spec.victim.name == "face_resnet101_semanticadv"
    info = DataInfo(2, (3, 112, 112), ["a", "b"], (0.5,) * 3, (0.25,) * 3)
    for i, node in enumerate(spec.pipeline.transfer_victims[:1]):
        sub = target_spec(ctx, node, i)
        assert sub.task.embedding_dim == 512 and sub.victim.name == "face_resnet50"
        assert not hasattr(sub.victim, "embedding_dim") and not hasattr(sub.victim, "label")
        with torch.device("meta"):  # shapes only: no weight initialisation of a ResNet-50 on the CPU
            net = VICTIMS.build(sub.victim).build(info, TASKS.build(sub.task, info).num_outputs)
        head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
        assert head.out_features == 512  # the embedding layer
    # a node without embedding_dim keeps the run's
    plain = target_spec(ctx, {"name": "face_resnet50", "checkpoint": None}, 0)
    assert plain.task.embedding_dim == 256
    with pytest.raises(ConfigError, match=r"transfer_victims\[0\].embedding_dim"):
        pipeline_config(transfer_victims=[{"name": "smallcnn", "embedding_dim": 0}])
    with pytest.raises(ConfigError, match=r"transfer_victims\[0\].thresholds.*one threshold per FPR"):
        pipeline_config(transfer_victims=[{"name": "smallcnn", "thresholds": [1.0]}])


def test_transfer_target_thresholds_are_its_own_not_the_generating_models():
    from advlab.data.base import DATASETS
    from advlab.pipelines.semantic_adv import embed, target_thresholds
    from advlab.tasks.verification import pair_distances, threshold_at_fpr

    cls = DATASETS.get("synthfaces")
    params = {"name": "synthfaces", "size": 16, "train_identities": 4, "dev_identities": 6,
              "test_identities": 2, "images_per_identity": 5}  # fmt: skip
    data = cls(parse_config(cls.Config, params, "dataset"), seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 12)).eval()
    # the run gives the generating model's thresholds (Table B style); the target chooses its own
    p = pipeline_config(fprs=[0.1, 0.05], thresholds=[1.3, 1.2])
    thr = target_thresholds(model, data, p, {"name": "smallcnn"}, "cpu", 0)
    ids = data.identities("dev")
    _, impostor = pair_distances(embed(model, data, "dev", torch.arange(len(ids)), "cpu"), ids)
    assert thr.values == pytest.approx([threshold_at_fpr(impostor, 0.1), threshold_at_fpr(impostor, 0.05)])
    assert thr.values != pytest.approx([1.3, 1.2])
    assert float((impostor < thr.values[0]).float().mean()) <= 0.1
    # or the node's own, in the run's unit (squared L2 here)
    p2 = pipeline_config(fprs=[0.1, 0.05], thresholds=[1.3, 1.2], threshold_distance="squared_l2")
    given = target_thresholds(model, data, p2, {"name": "smallcnn", "thresholds": [1.0, 0.81]}, "cpu", 0)
    assert given.values == pytest.approx([1.0, 0.9])
