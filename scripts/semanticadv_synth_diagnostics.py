"""Why does SemanticAdv reach the pairs it reaches on the embedded synthetic faces? Measurements on the cached
verifier and generator of ``experiment=semanticadv_synth`` (trained first when not cached), on the preset's
(source, target) pairs at G = T = the first FPR:

- ``verifier``: dev impostor / genuine distance statistics and the threshold's place in them;
- ``attack``: the preset's feature-map attack and ``--variants`` of it (``key=value;key=value`` attack fields),
  each with its ASR (Average / Best), the mean distance to the target and where alpha ends (share at its bounds);
- ``decoder``: how far *any* image the generator's decoder can produce moves the embedding (the feature map at
  the split optimised freely, no interpolation box);
- ``pixels``: how fragile the verifier is to an L-inf PGD of 4 / 8 / 16 (/255), 50 steps.

    python scripts/semanticadv_synth_diagnostics.py --checks verifier,attack,decoder,pixels \\
        --variants "alpha_min=0;alpha_init=0.5" "steps=500;lr=0.01" -- attack.feature_layer=f1
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch


def parse_value(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checks", default="verifier,attack,decoder,pixels")
    ap.add_argument("--variants", nargs="*", default=[], help="attack variants, e.g. 'alpha_min=0;lr=0.01'")
    ap.add_argument("overrides", nargs="*", help="config overrides (after --)")
    args = ap.parse_args()
    checks = set(args.checks.split(","))

    from advlab.attacks.semantic_adv import SemanticAdv
    from advlab.config_files import compose_config
    from advlab.context import RunContext, build_spec
    from advlab.loggers.base import Tracker
    from advlab.pipelines import semantic_adv as sa
    from advlab.recorder import RunRecorder
    from advlab.tasks.verification import embedding_distance, pair_distances

    cfg = compose_config("experiment=semanticadv_synth", "logger=none", *args.overrides)
    spec = build_spec(cfg)
    run_dir = Path("outputs/semanticadv_synth_diagnostics")
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(cfg, spec, run_dir, {}, Tracker(None), RunRecorder(run_dir, Tracker(None)))
    parts = ctx.build()
    data, task, device = parts.data, parts.task, spec.device
    victim, _ = ctx.prepare_victim(parts)
    victim = victim.to(device).eval()
    p = spec.pipeline
    thr = sa.choose_thresholds(victim, data, p, device, spec.seed)
    kappa = thr.values[0]
    pairs = sa.embed_pairs(victim, data, p.num_pairs, p.pair_seed, device)
    x = data.load_images("test", pairs.source).to(device)
    c = data.attributes("test")[pairs.source].to(device)
    tgt = pairs.target_emb

    def dist(img: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return embedding_distance(victim(img), t)

    rows = []  # (check, setting, ASR average, ASR best, mean distance, note)
    if "verifier" in checks:
        ids = data.identities("dev")
        genuine, impostor = pair_distances(sa.embed(victim, data, "dev", torch.arange(len(ids)), device), ids)
        note = (
            f"impostor mean {impostor.mean():.3f} std {impostor.std():.3f}, genuine mean {genuine.mean():.3f}; "
            f"threshold {kappa:.3f} = {kappa / impostor.mean():.0%} of the impostor mean"
        )
        with torch.no_grad():
            d0 = dist(x, tgt)
        rows.append(
            (
                "verifier",
                f"FPR {p.fprs[0]:g}",
                float((d0 < kappa).float().mean()),
                None,
                float(d0.mean()),
                note,
            )
        )
    if "attack" in checks or "decoder" in checks:
        gen, _ = sa.prepare_generator(ctx, data, p, spec.attack.feature_layer)
    k = len(data.attribute_names)
    t_rows = tgt.repeat_interleave(k, 0)
    if "attack" in checks:
        for variant in [""] + list(args.variants):
            fields = {a: parse_value(b) for a, b in (kv.split("=") for kv in variant.split(";") if kv)}
            t0 = time.perf_counter()
            atk = SemanticAdv(dataclasses.replace(spec.attack, **fields), task.at_threshold(kappa))
            res = atk.run(victim, gen, x, c, pairs.source_emb, tgt, list(range(k)))
            with torch.no_grad():
                d = dist(res.x_adv.flatten(0, 1), t_rows).view(-1, k)
            al = res.alpha.flatten(2)
            lo, hi = atk.params.alpha_min, atk.params.alpha_max
            note = (
                f"alpha at bounds {float((al <= lo + 1e-4).float().mean()):.0%} / "
                f"{float((al >= hi - 1e-4).float().mean()):.0%}; {time.perf_counter() - t0:.0f} s"
            )
            ok = d < kappa
            rows.append(("attack", variant or "preset", float(ok.float().mean()), float(ok.any(1).float().mean()),
                         float(d.mean()), note))  # fmt: skip
    if "decoder" in checks:
        with torch.no_grad():
            f = gen.encode(x, c).clone()
        f.requires_grad_(True)
        opt = torch.optim.Adam([f], lr=0.05)
        for _ in range(200):
            loss = dist(gen.decode(f), tgt).clamp(min=0.9 * kappa).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            img = gen.decode(f)
            d = dist(img, tgt)
        l2 = float((img - x).flatten(1).norm(dim=1).mean())
        rows.append(("decoder", "free feature map", float((d < kappa).float().mean()), None, float(d.mean()),
                     f"mean L2 to the source {l2:.2f}"))  # fmt: skip
    if "pixels" in checks:
        for eps in (4, 8, 16):
            delta = torch.zeros_like(x, requires_grad=True)
            for _ in range(50):
                (g,) = torch.autograd.grad(dist((x + delta).clamp(0, 1), tgt).sum(), delta)
                with torch.no_grad():
                    delta -= eps / 2550 * g.sign()
                    delta.clamp_(-eps / 255, eps / 255)
            with torch.no_grad():
                d = dist((x + delta).clamp(0, 1), tgt)
            rows.append(
                (
                    "pixels",
                    f"PGD Linf {eps}/255",
                    float((d < kappa).float().mean()),
                    None,
                    float(d.mean()),
                    "",
                )
            )
    print("| check | setting | ASR (Average) | ASR (Best) | mean d(., target) | note |")
    print("|---|---|---|---|---|---|")
    for check, setting, avg, best, d, note in rows:
        b = "-" if best is None else f"{best:.1%}"
        print(f"| {check} | {setting} | {avg:.1%} | {b} | {d:.3f} | {note} |")


if __name__ == "__main__":
    main()
