"""GPU benchmark: advlab's attack loops against the bare forward+backward and torchattacks, per precision /
memory format / compile setting, with peak GPU memory.

Rows (victims random-init and frozen, random images; wall-clock with ``torch.cuda.synchronize``; the methods
of a row interleaved per repeat, median reported):

* ``pgd resnet50@224`` and ``pgd resnet18@32``: ``bare`` = ``--steps`` x (forward, cross-entropy,
  ``autograd.grad`` w.r.t. the input, signed step) -- the least work a PGD step needs; ``advlab`` =
  ``attack=pgd`` (Linf 8/255, ``early_stop=false``: every step on the whole batch); ``torchattacks`` = its PGD
  with the same eps, step size and steps, on the same (accelerated) victim;
* ``eot_patch <victim>@1024``: one EOT patch training step (transforms from the full image, pasting, loss,
  backward to the patch, step, projection) vs the victim's bare forward+backward of the crop-sized batch;
* ``pgd promptpar ViT-L/14@224``: PGD on the PAR task (the attack step of the PromptPAR papers' victims)
  vs the bare loop;
* ``jma inception_v3@299``: JMA (``max_iters`` = ``--jma-iters``) on the multi-label task with 3-bit target
  flips, per image, vs one bare forward+backward per image.

Settings (``--variants``): ``fp32`` (the default run), ``bf16`` (``precision=bf16``), ``channels_last``
(``channels_last=true``), ``compile`` (``compile=default``; compile time excluded by the warm-up). Columns:
images/s of each method, time ratios ``advlab/bare`` and ``advlab/torchattacks`` (1.00 = same time; lower is
faster), ``vs fp32`` (advlab's speed-up over the row's fp32 setting) and peak GPU memory of the advlab method.

    .venv/bin/python scripts/bench_gpu.py --device cuda                      # the full table (GPU)
    .venv/bin/python scripts/bench_gpu.py --device cpu --quick --threads 2   # small sizes, runs anywhere

``--quick`` shrinks every row (PGD ResNet-50 at 64 px, ResNet-18 batch 32, EOT at 128x256 -> 128x128, the tiny
CLIP instead of ViT-L/14, Inception-v3 at 96 px, 2 JMA iterations) and drops ``compile`` from the default
variants on CPU (inductor's C++ build takes minutes there; pass ``--variants ... compile`` to include it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import advlab.attacks  # noqa: F401  (registers)
import advlab.victims  # noqa: F401
from advlab.attacks.base import ATTACKS
from advlab.data.info import DataInfo
from advlab.tasks.base import TASKS
from advlab.utils import frozen, resolve_device
from advlab.victims.acceleration import accelerate, compile_victim
from advlab.victims.base import VICTIMS
from advlab.victims.configs import Acceleration

VARIANTS = {
    "fp32": Acceleration(),
    "bf16": Acceleration(precision="bf16"),
    "channels_last": Acceleration(channels_last=True),
    "compile": Acceleration(compile="default"),
}
EPS = 8 / 255


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--quick", action="store_true", help="small sizes (CPU)")
    ap.add_argument("--rows", nargs="+", default=["pgd_r50", "pgd_r18", "eot", "promptpar", "jma"])
    ap.add_argument("--variants", nargs="+", default=None, choices=sorted(VARIANTS))
    ap.add_argument("--eot-victims", nargs="+", default=["pidnet_l", "segformer_b5"])
    ap.add_argument("--steps", type=int, default=10, help="PGD steps")
    ap.add_argument("--jma-iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.variants is None:
        args.variants = ["fp32", "bf16", "channels_last"] + ([] if args.quick else ["compile"])
    if args.quick:
        args.steps, args.jma_iters, args.repeats = (
            min(args.steps, 3),
            min(args.jma_iters, 2),
            min(args.repeats, 3),
        )
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass
class Row:
    """One benchmark row: ``methods`` maps a name to a no-argument callable doing ``images`` images' work."""

    name: str
    images: int
    methods: dict[str, Callable[[], object]]


def victim(name: str, info: DataInfo, outputs: int, acc: Acceleration, device, **params):
    built = VICTIMS.build(VICTIMS.parse({"name": name, **params})).build(info, outputs)
    v = accelerate(built, acc).to(device).eval().requires_grad_(False)
    return compile_victim(v)


def bare_steps(model, loss_fn, x, y, steps: int) -> Callable[[], object]:
    def run():
        xa = x
        for _ in range(steps):
            xa = xa.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(loss_fn(model(xa), y), xa)
            xa = xa.detach() + EPS / 4 * grad.sign()
        return xa

    return run


def pgd_methods(model, task, x, y, steps: int, torchattacks_too: bool) -> dict[str, Callable[[], object]]:
    attack = ATTACKS.create("pgd", task, eps=EPS, steps=steps, early_stop=False)
    methods = {
        "bare": bare_steps(model, lambda out, t: task.attack_loss(out, t, None).sum(), x, y, steps),
        "advlab": lambda: attack(model, x, y),
    }
    if torchattacks_too:
        try:
            import torchattacks
        except ImportError:
            print("NOTE: torchattacks not installed (make bench installs it); its column is n/a")
        else:
            ta = torchattacks.PGD(model, eps=EPS, alpha=attack.step_size, steps=steps, random_start=True)
            methods["torchattacks"] = lambda: ta(x, y)
    return methods


def classification(size: int, classes: int = 1000) -> tuple[DataInfo, object]:
    info = DataInfo(
        classes,
        (3, size, size),
        [str(i) for i in range(classes)],
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
    )
    return info, TASKS.build(TASKS.parse({"name": "classification"}), info)


def pgd_row(model_name: str, size: int, batch: int, classes: int, acc, args, device) -> Row:
    info, task = classification(size, classes)
    model = victim(model_name, info, classes, acc, device)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    return Row(f"pgd {model_name}@{size} b{batch}", batch, pgd_methods(model, task, x, y, args.steps, True))


def eot_row(
    name: str, image: tuple[int, int], crop: tuple[int, int], patch: int, batch: int, acc, device
) -> Row:
    (h, w), (ch, cw) = image, crop
    info = DataInfo(19, (3, h, w), [str(i) for i in range(19)], (0.5,) * 3, (0.25,) * 3)
    task = TASKS.build(TASKS.parse({"name": "segmentation"}), info)
    model = victim(name, info, 19, acc, device, init_weights=False)
    attack = ATTACKS.build(
        ATTACKS.parse(
            {"name": "eot_patch", "patch_size": [patch, patch], "crop": [ch, cw], "batch_size": batch}
        ),
        task,
    )
    gen = torch.Generator().manual_seed(0)
    attack.init_perturbation(info, device, gen)
    opt, _ = attack.make_optimizer(1)
    x_full, y_full = (
        torch.rand(batch, 3, h, w, device=device),
        torch.randint(0, 19, (batch, h, w), device=device),
    )
    x_crop, y_crop = (
        torch.rand(batch, 3, ch, cw, device=device),
        torch.randint(0, 19, (batch, ch, cw), device=device),
    )

    def bare():
        xa = x_crop.clone().requires_grad_(True)
        F.cross_entropy(model(xa), y_crop).backward()

    def step():
        with frozen(model):
            loss = attack.training_loss(model, x_full, y_full, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            attack.project()

    return Row(f"eot_patch {name}@{h}x{w}->{ch}x{cw} b{batch}", batch, {"bare": bare, "advlab": step})


def promptpar_row(model_name: str, size: int, batch: int, acc, args, device) -> Row:
    from advlab.data.synthpar import SynthPAR, SynthPARConfig

    data = SynthPAR(SynthPARConfig(name="synthpar", size=size, num_train=4, num_test=batch), 0)
    task = TASKS.build(TASKS.parse({"name": "par"}), data.info)
    model = victim(
        "promptpar", data.info, data.info.num_classes, acc, device, model_name=model_name, prompts_per_group=2
    )
    x, y = (t[:batch].to(device) for t in data.dataset("test").tensors)
    methods = pgd_methods(model, task, x, y, args.steps, False)
    return Row(f"pgd promptpar {model_name}@{size} b{batch}", batch, methods)


def jma_row(size: int, batch: int, acc, args, device) -> Row:
    labels = 20
    info = DataInfo(
        labels, (3, size, size), [str(i) for i in range(labels)], (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    )
    task = TASKS.build(TASKS.parse({"name": "multilabel", "flip_bits": 3}), info)
    model = victim("inception_v3", info, labels, acc, device)
    x = torch.rand(batch, 3, size, size, device=device)
    with torch.no_grad():
        y = (model(x) > 0).float()  # the victim's own labels: every target is 3 flips away
    target = task.sample_targets(y, torch.Generator().manual_seed(0)).to(device)
    attack = ATTACKS.create("jma", task, max_iters=args.jma_iters, binary_search_steps=2)
    bare = bare_steps(model, lambda out, t: F.binary_cross_entropy_with_logits(out, t), x, y, 1)
    return Row(f"jma inception_v3@{size} b{batch} ({args.jma_iters} it)", batch, {
        "bare": bare, "advlab": lambda: attack(model, x, y, target),
    })  # fmt: skip


def build_row(kind: str, acc: Acceleration, args, device) -> list[Row]:
    q = args.quick
    if kind == "pgd_r50":
        return [pgd_row("resnet50", 64 if q else 224, 4 if q else 128, 1000, acc, args, device)]
    if kind == "pgd_r18":
        return [pgd_row("resnet18", 32, 32 if q else 512, 10, acc, args, device)]
    if kind == "eot":
        image, crop, patch, batch = (
            ((128, 256), (128, 128), 20, 1) if q else ((1024, 2048), (1024, 1024), 200, 4)
        )
        return [eot_row(v, image, crop, patch, batch, acc, device) for v in args.eot_victims]
    if kind == "promptpar":
        return [
            promptpar_row(
                "advlab-tiny-clip" if q else "ViT-L-14", 64 if q else 224, 4 if q else 32, acc, args, device
            )
        ]
    if kind == "jma":
        return [jma_row(96 if q else 299, 2 if q else 8, acc, args, device)]
    raise SystemExit(f"unknown row '{kind}'")


def measure(row: Row, repeats: int, device: torch.device) -> dict[str, dict[str, float]]:
    for fn in row.methods.values():  # warm-up (and compilation)
        fn()
    times: dict[str, list[float]] = {name: [] for name in row.methods}
    for _ in range(repeats):
        for name, fn in row.methods.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    out = {
        name: {"median_s": statistics.median(ts), "img_s": row.images / statistics.median(ts)}
        for name, ts in times.items()
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        row.methods["advlab"]()
        sync(device)
        out["advlab"]["peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def table_line(r: dict, fp32: dict[str, float]) -> str:
    adv, bare, ta = r["advlab"], r["bare"], r.get("torchattacks")
    cells = [
        r["row"], r["variant"], f"{bare['img_s']:.2f}", f"{adv['img_s']:.2f}",
        f"{ta['img_s']:.2f}" if ta else "n/a", f"{adv['median_s'] / bare['median_s']:.3f}",
        f"{adv['median_s'] / ta['median_s']:.3f}" if ta else "n/a",
        f"{fp32[r['row']] / adv['median_s']:.2f}x" if r["row"] in fp32 else "n/a",
        f"{adv['peak_mem_gib']:.2f}" if "peak_mem_gib" in adv else "n/a",
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"advlab GPU benchmark | {device} ({name}{threads}) | torch {torch.__version__} | "
          f"PGD steps {args.steps} | median of {args.repeats}{' | --quick' if args.quick else ''}\n")  # fmt: skip
    print("| row | setting | bare img/s | advlab img/s | torchattacks img/s | advlab/bare | advlab/torchattacks "
          "| vs fp32 | peak GiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    results, fp32 = [], {}
    for kind in args.rows:
        for variant in args.variants:
            for row in build_row(kind, VARIANTS[variant], args, device):
                result = {"row": row.name, "variant": variant, **measure(row, args.repeats, device)}
                if variant == "fp32":
                    fp32[row.name] = result["advlab"]["median_s"]
                print(table_line(result, fp32), flush=True)  # each row as soon as it is measured
                results.append(result)
                del row
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "device": name,
            "torch": torch.__version__,
            "args": {k: str(v) for k, v in vars(args).items()},
        }
        args.json.write_text(json.dumps({**meta, "rows": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
