"""SemanticAdv: verification metrics, the StarGAN generator split, the attack's interpolation, the CelebA
loader, config errors, and a small end-to-end run of the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_cfg
from PIL import Image
from scipy.stats import norm

from advlab.attacks.semantic_adv import SemanticAdv, flip_attributes, tv_loss
from advlab.data.base import DATASETS
from advlab.data.info import DataInfo
from advlab.errors import AdvlabError, ConfigError, DatasetNotFoundError
from advlab.generators.stargan import AttributeGenerator, StarGANDiscriminator, StarGANGenerator
from advlab.registry import parse_config
from advlab.tasks.verification import (
    Verification,
    embedding_distance,
    pair_distances,
    threshold_at_fpr,
)

INFO = DataInfo(10, (3, 16, 16), [str(i) for i in range(10)], (0.5,) * 3, (0.5,) * 3)


def verification(threshold: float = 1.0) -> Verification:
    return Verification(
        parse_config(Verification.Config, {"name": "verification", "threshold": threshold}, "task"), INFO
    )


# ---- thresholds and verification metrics ------------------------------------------------------------------


@pytest.mark.parametrize("fpr", [1e-2, 1e-3, 1e-4])
def test_threshold_at_fpr_matches_the_impostor_quantile(fpr):
    gen = torch.Generator().manual_seed(0)
    impostor = 1.3 + 0.1 * torch.randn(400_000, generator=gen, dtype=torch.float64)
    t = threshold_at_fpr(impostor, fpr)
    achieved = float((impostor < t).double().mean())
    # at most the requested FPR, and not more than one pair below it
    assert achieved <= fpr + 1e-12
    assert achieved >= fpr - 1.0 / impostor.numel() - 1e-12
    # the population quantile of N(1.3, 0.1)
    assert t == pytest.approx(norm.ppf(fpr, 1.3, 0.1), abs=0.01 if fpr < 1e-3 else 0.004)
    # a genuine distribution further left: larger FPR -> larger threshold -> more accepted
    assert threshold_at_fpr(impostor, fpr * 2) >= t


def test_threshold_at_fpr_on_a_small_hand_example():
    d = torch.tensor([0.9, 0.2, 0.5, 0.7, 0.3, 1.1, 1.0, 0.8, 0.6, 0.4])  # sorted: .2 .3 .4 ... 1.1
    assert threshold_at_fpr(d, 0.1) == pytest.approx(0.3)  # one pair (0.2) below 0.3: FPR 0.1
    assert threshold_at_fpr(d, 0.25) == pytest.approx(0.4)  # floor(2.5) = 2 pairs below
    with pytest.raises(AdvlabError, match="needs at least"):
        threshold_at_fpr(d, 0.01)


def test_pair_distances_and_normalised_distance_by_hand():
    emb = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    ids = torch.tensor([7, 7, 9])
    genuine, impostor = pair_distances(emb, ids)
    assert genuine.tolist() == pytest.approx([0.0])
    assert sorted(impostor.tolist()) == pytest.approx([2**0.5, 2**0.5])
    assert embedding_distance(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[-5.0, 0.0]])
    ).item() == pytest.approx(2.0)


def test_verification_success_rule():
    task = verification(threshold=0.5)
    out = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    target = torch.tensor([[1.0, 0.3], [0.0, 1.0]])  # distances ~0.29 and ~1.41
    assert task.success(out, out, target).tolist() == [True, False]
    assert torch.all((task.margin(out, out, target) < 0) == task.success(out, out, target))
    # untargeted: the source reference is rejected
    assert task.success(out, target, None).tolist() == [False, True]


def test_supervised_contrastive_loss_prefers_clustered_identities():
    task = verification()
    y = torch.tensor([0, 0, 1, 1])
    good = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    bad = good[[0, 2, 1, 3]]
    assert task.loss(good, y) < task.loss(bad, y)


# ---- generator, interpolation, TV -----------------------------------------------------------------------


def tiny_generator(c_dim: int = 3, layer: str = "last_res") -> AttributeGenerator:
    torch.manual_seed(0)
    return AttributeGenerator(StarGANGenerator(c_dim, conv_dim=4, repeat_num=2), layer).eval()


def semantic_adv(**params) -> SemanticAdv:
    cfg = parse_config(SemanticAdv.Config, {"name": "semantic_adv", **params}, "attack")
    return SemanticAdv(cfg, verification(threshold=0.2))


def test_tv_loss_equals_hand_computed_value():
    a = torch.tensor([[1.0, 2.0, 4.0], [0.0, 2.0, 3.0]]).view(1, 1, 2, 3)
    # the authors' TVLoss(L=2), size_average: 2 * (mean of the squared vertical differences + mean of the
    # horizontal ones); vertical: (0-1)^2 + (2-2)^2 + (3-4)^2 = 2 over 3 pairs, horizontal: 1 + 4 + 4 + 1 = 10
    # over 4 pairs
    assert tv_loss(a).item() == pytest.approx(2 * (2 / 3 + 10 / 4))
    two = torch.cat([a, torch.zeros_like(a)])
    assert tv_loss(two).tolist() == pytest.approx([2 * (2 / 3 + 10 / 4), 0.0])
    # a mean, not a sum: the same pattern over more channels has the same value
    assert tv_loss(a.expand(1, 5, 2, 3)).item() == pytest.approx(2 * (2 / 3 + 10 / 4))
    assert tv_loss(torch.ones(3, 1)).tolist() == [0.0, 0.0, 0.0]


def test_flip_attributes_batches_images_and_attributes():
    c = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    out = flip_attributes(c, torch.tensor([0, 2]))
    assert out.tolist() == [[0, 0, 0], [1, 0, 1], [1, 1, 1], [0, 1, 0]]


@pytest.mark.parametrize("interpolation", ["feature", "attribute"])
def test_alpha_at_its_no_edit_value_reproduces_the_reconstruction(interpolation):
    g = tiny_generator()
    attack = semantic_adv(interpolation=interpolation)
    x = torch.rand(2, 3, 16, 16)
    c = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    c_new = flip_attributes(c, torch.tensor([1]))
    with torch.no_grad():
        recon = g(x, c)
        shape = g.encode(x, c).shape if interpolation == "feature" else (2, 1)
        no_edit = attack.synthesize(g, torch.zeros(shape), x, c, c_new)
        full = attack.synthesize(g, torch.ones(shape), x, c, c_new)
    assert torch.allclose(no_edit, recon, atol=1e-6)
    assert torch.allclose(full, g(x, c_new), atol=1e-6)
    assert not torch.allclose(full, recon, atol=1e-3)  # the edit changes the image


def test_generator_split_composes_to_the_full_network():
    g = tiny_generator(layer="res1")
    x, c = torch.rand(2, 3, 16, 16), torch.rand(2, 3).round()
    with torch.no_grad():
        assert torch.allclose(g.decode(g.encode(x, c)), g(x, c), atol=1e-6)
    assert g.encode(x, c).shape == (2, 16, 4, 4)
    assert AttributeGenerator(g.net, "up1").encode(x, c).shape == (2, 8, 8, 8)
    with pytest.raises(ConfigError, match="res1..res2"):
        AttributeGenerator(g.net, "res7")
    d = StarGANDiscriminator(16, 3, conv_dim=4, repeat_num=2)
    src, cls = d(x)
    assert src.shape == (2, 1, 4, 4) and cls.shape == (2, 3)


@pytest.mark.parametrize("interpolation", ["feature", "attribute"])
def test_alpha_stays_in_its_clamp_range(interpolation):
    g = tiny_generator()
    torch.manual_seed(1)
    victim = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 8))
    x = torch.rand(2, 3, 16, 16)
    c = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    target = torch.randn(2, 8)
    attack = semantic_adv(
        interpolation=interpolation,
        lr=5.0,
        steps=6,
        recon_steps=2,
        alpha_min=0.6,
        alpha_max=1.0,
        early_stop=False,
    )
    res = attack.run(victim, g, x, c, victim(x).detach(), target, [0, 1, 2])
    assert res.alpha.min() >= 0.6 - 1e-7 and res.alpha.max() <= 1.0 + 1e-7
    assert res.x_adv.shape == (2, 3, 3, 16, 16) and res.success.shape == (2, 3)
    # with a huge step the clamp is active: some entries sit on a bound
    assert bool(((res.alpha - 0.6).abs() < 1e-6).any() or ((res.alpha - 1.0).abs() < 1e-6).any())
    assert all(p.requires_grad for p in g.parameters())  # the generator is unfrozen afterwards
    # when nothing succeeded, the returned image is the synthesis at the final alpha
    if not res.success.any():
        c_new = flip_attributes(c, torch.tensor([0, 1, 2]))
        with torch.no_grad():
            alpha = res.alpha.flatten(0, 1)
            x_in = attack.reconstruct(g, x, c).repeat_interleave(3, 0)
            again = attack.synthesize(g, alpha, x_in, c.repeat_interleave(3, 0), c_new)
        assert torch.allclose(again.view_as(res.x_adv), res.x_adv, atol=1e-4)


def test_feature_attack_reaches_a_reachable_target():
    """The target embedding is that of an interpolation inside the clamp range: the feature attack finds an
    image the (linear) victim accepts as the target."""
    g = tiny_generator()
    torch.manual_seed(2)
    victim = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 16))
    x = torch.rand(3, 3, 16, 16)
    c = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    c_new = flip_attributes(c, torch.tensor([2]))
    with torch.no_grad():
        f0, f1 = g.encode(x, c), g.encode(x, c_new)
        a_star = 0.6 + 0.4 * torch.rand(f0.shape)
        target = victim(g.decode((1 - a_star) * f0 + a_star * f1))
    with torch.no_grad():
        d0 = embedding_distance(victim(g.decode(0.2 * f0 + 0.8 * f1)), target)  # at the initial alpha
    threshold = float(d0.min()) / 5  # the initial point is far from succeeding
    attack = semantic_adv(steps=200, recon_steps=0, lr=0.05, tv_weight=0.0)
    attack.task.threshold = threshold
    res = attack.run(victim, g, x, c, victim(x).detach(), target, [2])
    assert res.success.all()
    with torch.no_grad():
        d = embedding_distance(victim(res.x_adv[:, 0]), target)
    assert (d < threshold).all()
    assert (res.iters > 0).all()


def test_semantic_adv_outside_its_pipeline_is_a_clear_error():
    attack = semantic_adv()
    with pytest.raises(AdvlabError, match="pipeline=semantic_adv"):
        attack(torch.nn.Identity(), torch.rand(1, 3, 8, 8), torch.rand(1, 4), torch.rand(1, 4))


# ---- CelebA on a fixture in its real layout ----------------------------------------------------------------

ATTR_NAMES = "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young".split()


@pytest.fixture
def celeba_root(tmp_path):
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [f"{i:06d}.jpg" for i in range(1, 10)]
    identities = [2880, 2880, 17, 17, 17, 9, 9, 4, 4]
    partition = [0, 0, 0, 0, 0, 1, 1, 2, 2]
    attrs = rng.integers(0, 2, size=(len(files), 40))
    for f in files:
        Image.fromarray(rng.integers(0, 255, size=(218, 178, 3), dtype=np.uint8)).save(
            root / "img_align_celeba" / f
        )
    rows = [f"{f} " + " ".join("1" if v else "-1" for v in a) for f, a in zip(files, attrs)]
    (root / "list_attr_celeba.txt").write_text(
        f"{len(files)}\n" + " ".join(ATTR_NAMES) + "\n" + "\n".join(rows) + "\n"
    )
    (root / "identity_CelebA.txt").write_text("\n".join(f"{f} {i}" for f, i in zip(files, identities)) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{f} {p}" for f, p in zip(files, partition)) + "\n"
    )
    return root, attrs


def celeba(root, **params):
    cls = DATASETS.get("celeba")
    return cls(parse_config(cls.Config, {"name": "celeba", "root": str(root), **params}, "dataset"), seed=0)


def test_celeba_loader_on_its_fixture(celeba_root):
    root, attrs = celeba_root
    dm = celeba(root)
    assert dm.info.image_shape == (3, 112, 112) and dm.info.num_classes == 2  # train identities 2880 and 17
    assert len(dm.attribute_names) == 17
    ds = dm.dataset("train")
    assert len(ds) == 5 and len(dm.dataset("dev")) == 2 and len(dm.dataset("test")) == 2
    x, y = ds[0]
    assert x.shape == (3, 112, 112) and 0 <= float(x.min()) and float(x.max()) <= 1
    # train identities relabelled to 0..K-1, sorted by CelebA id (17 -> 0, 2880 -> 1)
    assert dm.identities("train").tolist() == [1, 1, 0, 0, 0]
    assert set(dm.identities("test").tolist()).isdisjoint(dm.identities("train").tolist())
    # attributes in the configured order, 1/-1 -> 1/0
    col = ATTR_NAMES.index("Eyeglasses")
    k = dm.attribute_names.index("Eyeglasses")
    assert dm.attributes("train")[:, k].tolist() == attrs[:5, col].astype(float).tolist()
    img, a = dm.attribute_dataset("test")[1]
    assert a.shape == (17,) and a[k] == float(attrs[8, col])
    small = celeba(root, image_size=32, attributes=["Smiling", "Eyeglasses"])
    assert small.dataset("dev")[0][0].shape == (3, 32, 32) and small.attributes("dev").shape == (2, 2)


def test_celeba_errors_name_the_problem(celeba_root, tmp_path):
    root, _ = celeba_root
    with pytest.raises(DatasetNotFoundError, match="list_eval_partition.txt"):
        _ = celeba(tmp_path).info
    with pytest.raises(DatasetNotFoundError, match="Not_An_Attribute"):
        _ = celeba(root, attributes=["Smiling", "Not_An_Attribute"]).info


# ---- config errors ---------------------------------------------------------------------------------------


def _check(*overrides):
    from advlab.context import RunContext, build_spec
    from advlab.loggers.base import Tracker
    from advlab.pipelines.base import PIPELINES
    from advlab.recorder import RunRecorder

    cfg = make_cfg("experiment=semanticadv_synth", "device=cpu", *overrides)
    spec = build_spec(cfg)
    ctx = RunContext(cfg, spec, Path("unused"), {}, Tracker(None), RunRecorder(Path("unused"), Tracker(None)))
    PIPELINES.build(spec.pipeline).check(ctx)


def test_mismatched_attribute_counts_fail_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match="4 attributes .* dataset provides 6"):
        _check("pipeline.generator.attributes=[Blond_Hair,Eyeglasses,Smiling,Bangs]")
    ckpt = tmp_path / "g.pt"
    torch.save(StarGANGenerator(17, conv_dim=16, repeat_num=4).state_dict(), ckpt)
    with pytest.raises(ConfigError, match="trained with 17 attributes but the dataset provides 6"):
        _check(f"pipeline.generator.checkpoint={ckpt}")
    # and at load time, for a generator built directly
    from advlab.generators.stargan import load_generator_state

    with pytest.raises(ConfigError, match="17 attributes but the config uses 5"):
        load_generator_state(StarGANGenerator(5, 16, 4), torch.load(ckpt), str(ckpt))
    g = tiny_generator(c_dim=3)
    with pytest.raises(ConfigError, match="expects 3 attributes"):
        g(torch.rand(1, 3, 16, 16), torch.zeros(1, 5))


def test_other_config_errors():
    with pytest.raises(ConfigError, match="attack.interpolation"):
        _check("attack.interpolation=pixel")
    with pytest.raises(ConfigError, match="alpha_init"):
        _check("attack.alpha_init=0.5")
    with pytest.raises(ConfigError, match="res1..res4"):
        _check("attack.feature_layer=res9")
    with pytest.raises(ConfigError, match="one threshold per FPR"):
        _check("pipeline.thresholds=[1.0]")
    with pytest.raises(ConfigError, match="checkpoint"):
        _check("victim=face_resnet101", "~victim.width", "~victim.hidden")
    # caught by the config check, before the pipeline's own
    with pytest.raises(ConfigError, match="needs face identities.*dataset .digits."):
        _check("dataset=digits")


# ---- end to end --------------------------------------------------------------------------------------------

TINY = [
    "device=cpu",
    "dataset.size=16",
    "dataset.train_identities=30",
    "dataset.dev_identities=12",
    "dataset.test_identities=6",
    "dataset.images_per_identity=6",
    "train.epochs=3",
    "train.batch_size=60",
    "victim.width=8",
    "victim.hidden=32",
    "pipeline.fprs=[0.05,0.01]",
    "pipeline.num_pairs=4",
    "pipeline.batch_size=4",
    "pipeline.grid_examples=2",
    "pipeline.generator.conv_dim=4",
    "pipeline.generator.repeat_num=2",
    "pipeline.generator.d_conv_dim=4",
    "pipeline.generator.d_repeat_num=2",
    "pipeline.gan_train.iters=6",
    "pipeline.gan_train.decay_iters=3",
    "pipeline.gan_train.checkpoint_every=2",
    "pipeline.gan_train.batch_size=8",
]
SEMANTIC = [
    "attack.recon_steps=3",
    "attack.steps=5",
    "pipeline.gan_train.lambda_adv=1",
    "pipeline.gan_train.lambda_cls=1",
]


@pytest.mark.slow
def test_semantic_adv_pipeline_end_to_end(tmp_path):
    from advlab.runner import run

    res = run(make_cfg("experiment=semanticadv_synth", *TINY, *SEMANTIC), tmp_path / "feature")
    m = res["metrics"]
    for key in (
        "attack/asr",
        "attack/asr_instance",
        "attack/asr_g5e-2_t1e-2",
        "attack/asr_g1e-2_t5e-2",
        "clean/threshold_5e-2",
        "attack/asr_Eyeglasses",
    ):
        assert key in m, key
    table = res["semantic_adv"]
    assert set(table["asr"]) == {"5e-2", "1e-2"} and len(table["asr_per_attribute"]) == 6
    # instance-wise success >= per-attack success; the looser test threshold accepts at least as much
    for g in table["asr"]:
        for t in table["asr"][g]:
            assert table["asr_instance"][g][t] >= table["asr"][g][t] - 1e-9
        assert table["asr"][g]["5e-2"] >= table["asr"][g]["1e-2"] - 1e-9
    assert m["clean/threshold_5e-2"] >= m["clean/threshold_1e-2"]
    for name in ("semanticadv_pairs_g5e-2.png", "semanticadv_attributes_g1e-2.png", "results.json"):
        assert (tmp_path / "feature" / name).is_file()
    assert res["generator"]["source"] == "trained" and res["victim"]["source"] == "trained"
    # second run (attribute interpolation, C&W with a transfer victim) reuses the cached victim and generator
    res2 = run(
        make_cfg("experiment=semanticadv_synth", *TINY, *SEMANTIC, "attack.interpolation=attribute"),
        tmp_path / "attr",
    )
    assert res2["generator"]["source"] == "cache" and res2["victim"]["source"] == "cache"
    res3 = run(
        make_cfg(
            "experiment=semanticadv_synth",
            *TINY,
            "attack=cw_l2",
            "attack.targeted=true",
            "attack.steps=5",
            "attack.binary_search_steps=2",
            "+pipeline.transfer_victims=[{name: smallcnn, width: 4, hidden: 16}]",
        ),
        tmp_path / "cw",
    )
    assert "attack/asr" in res3["metrics"] and "smallcnn" in res3["semantic_adv"]["transfer"]
    assert json.loads((tmp_path / "cw" / "results.json").read_text())["semantic_adv"]["attributes"] == [
        "pixel"
    ]


def test_stargan_training_resumes_exactly(tmp_path):
    """Two iterations, a 'kill', two more from the checkpoint == four uninterrupted iterations."""
    from advlab.loops.stargan_fit import GANTrainConfig, fit_stargan

    cls = DATASETS.get("synthfaces")
    data = cls(
        parse_config(
            cls.Config,
            {
                "name": "synthfaces",
                "size": 16,
                "train_identities": 4,
                "dev_identities": 2,
                "test_identities": 2,
                "images_per_identity": 4,
            },
            "dataset",
        ),
        seed=0,
    )

    def params(iters):
        return parse_config(
            GANTrainConfig,
            {
                "iters": iters,
                "batch_size": 4,
                "decay_iters": 0,
                "checkpoint_every": 1,
                "n_critic": 2,
                "lambda_paired": 1.0,
            },
            "gan_train",
        )

    def nets():
        torch.manual_seed(0)
        return StarGANGenerator(6, 4, 1), StarGANDiscriminator(16, 6, 4, 2)

    g_full, d_full = nets()
    fit_stargan(g_full, d_full, data, params(4), torch.device("cpu"), 0, tmp_path / "full.pt")
    g_a, d_a = nets()
    fit_stargan(g_a, d_a, data, params(2), torch.device("cpu"), 0, tmp_path / "resume.pt")
    g_b, d_b = nets()  # a fresh process: new networks, state from the file
    fit_stargan(g_b, d_b, data, params(4), torch.device("cpu"), 0, tmp_path / "resume.pt")
    for a, b in zip(g_full.state_dict().values(), g_b.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(d_full.state_dict().values(), d_b.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(next(iter(g_full.parameters())), next(iter(nets()[0].parameters())))


def test_synthfaces_identities_attributes_and_counterfactuals():
    cls = DATASETS.get("synthfaces")
    dm = cls(
        parse_config(
            cls.Config,
            {
                "name": "synthfaces",
                "size": 24,
                "train_identities": 5,
                "dev_identities": 3,
                "test_identities": 2,
                "images_per_identity": 3,
            },
            "dataset",
        ),
        seed=0,
    )
    ids = {s: set(dm.identities(s).tolist()) for s in ("train", "dev", "test")}
    assert len(ids["train"]) == 5 and not ids["train"] & ids["dev"] and not ids["dev"] & ids["test"]
    x, y = dm.dataset("test")[0]
    assert x.shape == (3, 24, 24) and 0 <= float(x.min()) and float(x.max()) <= 1
    idx = torch.arange(len(dm.identities("test")))
    a = dm.attributes("test")
    assert torch.allclose(dm.counterfactuals("test", idx, a), dm.images("test").tensors[0], atol=1e-6)
    flipped = a.clone()
    flipped[:, 1] = 1 - flipped[:, 1]  # eyeglasses on/off changes the image
    assert (dm.counterfactuals("test", idx, flipped) - dm.images("test").tensors[0]).abs().amax(
        dim=(1, 2, 3)
    ).min() > 0.1


def test_table_builder_renders_figure3_transfer_and_table_c(tmp_path):
    from advlab.reporting.report import main as report_main

    tags = ["1e-3", "1e-4"]

    def payload(label, attack, interp, transfer, own):
        return {
            "victim": {"name": "face_resnet101_semanticadv"},
            "metrics": {},
            "semantic_adv": {
                "attack": attack,
                "interpolation": interp,
                "victim_label": label,
                "attributes": ["Smiling", "Eyeglasses"],
                "asr": {g: {t: 0.5 if t == "1e-3" else 0.25 for t in tags} for g in tags},
                "asr_instance": {g: {t: 0.75 for t in tags} for g in tags},
                "asr_worst": {g: {t: 0.125 for t in tags} for g in tags},
                "asr_per_attribute": {
                    a: {f"g{g}_t{t}": 0.4 for g in tags for t in tags} for a in ["Smiling", "Eyeglasses"]
                },
                "reference": {t: {"source": 0.0, "recon": 0.0, "edit_best": 0.0625} for t in tags},
                "transfer": transfer,
                "self_transfer": own,
            },
        }

    own = {"1e-3": {"1e-3": 1.0, "1e-4": 0.5}, "1e-4": {"1e-3": 1.0, "1e-4": 1.0}}
    # two targets of one architecture (face_resnet50), reported under their own labels
    t = {
        "R-50-S": {
            "victim": "face_resnet50",
            "asr": {"1e-3": {"1e-3": 0.125, "1e-4": 0.0625}, "1e-4": {"1e-3": 0.5, "1e-4": 0.25}},
        },
        "R-50-C": {
            "victim": "face_resnet50",
            "asr": {"1e-3": {"1e-3": 0.375, "1e-4": 0.0}, "1e-4": {"1e-3": 0.75, "1e-4": 0.0}},
        },
    }
    t_cw = {"R-50-S": {"victim": "face_resnet50", "asr": {g: {u: 0.25 for u in tags} for g in tags}}}
    for name, body in [
        ("a", payload("R-101-S", "semantic_adv", "feature", t, own)),
        ("b", payload("R-101-S", "cw_l2", None, t_cw, own)),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(body))
    assert report_main([str(tmp_path), "--layout", "semanticadv", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "semanticadv_fig3_a.png").stat().st_size > 1000
    asr = (tmp_path / "out" / "semanticadv_asr.md").read_text()
    assert "semantic_adv/feature" in asr and "| 50.00 | 75.00 | 12.50 |" in asr and "cw_l2" in asr
    transfer = (tmp_path / "out" / "semanticadv_transfer.md").read_text()
    # paper layout: rows = tested model, columns = generating model; C&W in brackets
    block = transfer.split("\n\n")[0]  # G 1e-3 / T 1e-3
    assert "| M_test / M_opt (G-FPR 1e-3, T-FPR 1e-3) | R-101-S |" in block
    assert "| R-101-S | 1.000 (1.000) |" in block
    assert "| R-50-S | 0.125 (0.250) |" in block and "| R-50-C | 0.375 |" in block
    table_c = (tmp_path / "out" / "semanticadv_table_c.md").read_text()
    for row in (
        "| 1e-3 | G(x0, c_new) (Best) | 6.25 |",
        "| 1e-3 | SemanticAdv (Best) | 75.00 |",
        "| 1e-3 | SemanticAdv (Worst) | 12.50 |",
        "| 1e-3 | SemanticAdv (Average) | 50.00 |",
        "| 1e-4 | SemanticAdv (Average) | 25.00 |",
        "| 1e-3 | CW | 50.00 |",
    ):
        assert row in table_c, row


def test_generator_checkpoint_in_the_reference_layout_loads(tmp_path):
    from advlab.generators.stargan import load_generator_state

    ref = StarGANGenerator(5, 8, 2)
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}  # old format
    assert "main.9.main.0.weight" in state and "main.1.running_mean" in state
    net = StarGANGenerator(5, 8, 2)
    load_generator_state(net, state, "ref")
    x, c = torch.rand(1, 3, 16, 16), torch.ones(1, 5)
    with torch.no_grad():
        assert torch.allclose(net(x, c), ref(x, c))
    from advlab.errors import CheckpointError

    with pytest.raises(CheckpointError, match="conv_dim"):
        load_generator_state(StarGANGenerator(5, 16, 2), state, "ref")


def test_identity_grouped_training_batches_cover_every_image_once_with_positives():
    """The embedding victim's shuffled training batches: every image exactly once per epoch, images of one
    identity in runs of at most images_per_identity_batch, so (almost) every anchor has a positive in its batch
    (with plain shuffling of 200 identities x 10 images, a batch of 128 gives about 0.6 positives per anchor)."""
    from advlab.data.faces import identity_grouped_order

    cls = DATASETS.get("synthfaces")
    cfg = {
        "name": "synthfaces",
        "size": 16,
        "train_identities": 40,
        "dev_identities": 2,
        "test_identities": 2,
    }
    dm = cls(parse_config(cls.Config, {**cfg, "images_per_identity": 10}, "dataset"), seed=0)
    ids = dm.identities("train")
    batches = [y for _, y in dm.loader("train", 64, shuffle=True, seed=3)]
    seen = torch.cat(batches)
    assert len(seen) == len(ids) and torch.equal(seen.sort().values, ids.sort().values)
    with_positive = sum(int(((b[:, None] == b[None, :]).sum(1) > 1).sum()) for b in batches)
    assert with_positive / len(ids) >= 0.9
    order = identity_grouped_order(ids, 4, torch.Generator().manual_seed(1))
    assert torch.equal(order.sort().values, torch.arange(len(ids)))
    runs = torch.unique_consecutive(ids[order], return_counts=True)[1]
    assert int(runs.max()) <= 10  # groups of one identity may meet by chance: at most its 10 images
    assert float((runs >= 2).float().mean()) > 0.9  # runs of one image only where groups of 4, 4, 2 split
    other = identity_grouped_order(ids, 4, torch.Generator().manual_seed(2))
    assert not torch.equal(order, other)  # the epoch seed reshuffles
    plain = cls(parse_config(cls.Config, {**cfg, "images_per_identity_batch": 0}, "dataset"), seed=0)
    plain_batches = [y for _, y in plain.loader("train", 64, shuffle=True, seed=3)]
    plain_pos = sum(int(((b[:, None] == b[None, :]).sum(1) > 1).sum()) for b in plain_batches)
    assert plain_pos < with_positive
    with pytest.raises(ConfigError, match="images_per_identity_batch"):
        parse_config(cls.Config, {**cfg, "images_per_identity_batch": -1}, "dataset").validate("dataset")
