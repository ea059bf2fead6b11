"""The evaluate loop: clean metrics on the test split and, with an attack, metrics under the attack.

Metric keys: ``clean/<m>`` and ``adv/<m>`` from the task (e.g. ``acc``), ``attack/asr`` (task's rule),
``attack/linf``, ``attack/l2``, ``attack/mse``, ``attack/psnr`` and ``attack/ssim`` (means over the examples
counted as successes, the convention for minimal-perturbation attacks), ``attack/linf_max``/``attack/l2_max`` (over all attacked examples, the bound
check), ``attack/time_per_image_s`` and any per-sample statistic the attack reports (``attack/iters``...).

Under ``precision=bf16|fp16`` the attack runs the victim under autocast, but the clean and adversarial outputs
every metric is computed from come from a full-precision forward (:func:`advlab.victims.acceleration.full_precision`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from advlab import distributed, keyed_random
from advlab.attacks.base import Attack, NoAttack
from advlab.data.base import DataModule
from advlab.data.subset import eval_loader, nested_range, read_target_file
from advlab.errors import AdvlabError
from advlab.loops.configs import EvalConfig  # noqa: F401
from advlab.metrics.distortion import distortion, image_quality
from advlab.metrics.meter import Meter
from advlab.progress import track
from advlab.reporting.pictures import Examples
from advlab.resume import LoopState
from advlab.tasks.base import Task
from advlab.victims.acceleration import full_precision

logger = logging.getLogger(__name__)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lpips_metric(name: str, model: nn.Module):
    """The per-sample LPIPS distance behind ``attack/lpips``."""
    from advlab.perceptual.lpips_distance import CalibratedLPIPS, LPIPSConfig, LPIPSDistance

    if name == "self":
        return LPIPSDistance(LPIPSConfig(model="self"), model)
    net = "alex" if name == "alex_random" else name
    ref = next(model.parameters(), None)
    metric = CalibratedLPIPS(net, random_trunk=name == "alex_random")
    return metric.to(ref.device) if ref is not None else metric


@dataclasses.dataclass
class EvaluationState(LoopState):
    """The evaluate loop's progress: meters, counters, drawn targets and per-example outcomes so far."""

    clean: Meter
    adv: Meter
    attack: Meter  # attack/... statistics
    attack_time: float
    n_images: int
    examples: Examples | None
    targets: list[Tensor]
    clean_correct: list[Tensor]
    adv_correct: list[Tensor]
    next_batch: int
    # unused since targets are keyed on each image's position (keyed_targets); kept for the file format
    generator: Tensor

    def to(self, device: torch.device) -> EvaluationState:
        for meter in (self.clean, self.adv, self.attack):
            meter.to(device)
        self.clean_correct = [t.to(device) for t in self.clean_correct]
        self.adv_correct = [t.to(device) for t in self.adv_correct]
        return self

    def merge(self, other: EvaluationState) -> EvaluationState:
        """Append the next shard's state (the images after this state's) in place: meters, per-example
        outcomes and targets concatenated in order, times and counts summed, this state's pictures kept (the
        first shard's are the unsharded run's first batch). Returns ``self``."""
        self.clean.merge(other.clean)
        self.adv.merge(other.adv)
        self.attack.merge(other.attack)
        self.attack_time += other.attack_time
        self.n_images += other.n_images
        if self.examples is None:
            self.examples = other.examples
        self.targets += other.targets
        device = self.clean_correct[0].device if self.clean_correct else None
        self.clean_correct += [t.to(device or t.device) for t in other.clean_correct]
        self.adv_correct += [t.to(device or t.device) for t in other.adv_correct]
        self.next_batch += other.next_batch
        return self


def keyed_targets(task: Task, y: Tensor, first: int, seed: int) -> Tensor:
    """The attack targets of a batch whose images sit at positions ``first, first + 1, ...`` of the
    evaluation: each image's drawn by ``task.sample_targets`` from its own generator, seeded by the run's seed
    and that position, so a sharded or distributed evaluation draws every image's target as the unsharded run
    does (one small CPU draw per image, once per batch, outside the attack)."""
    y_cpu = y.cpu()
    rows = [
        task.sample_targets(y_cpu[i : i + 1], torch.Generator().manual_seed(seed * 1_000_003 + first + i))
        for i in range(y_cpu.shape[0])
    ]
    return torch.cat(rows).to(y.device)


def eval_metrics(state: EvaluationState, run_attack: bool) -> dict[str, float]:
    """``results.json``'s metrics of an evaluation from its (possibly merged) state."""
    st = state
    metrics = {f"clean/{k}": v for k, v in st.clean.compute().items()}
    if run_attack:
        metrics.update({f"adv/{k}": v for k, v in st.adv.compute().items()})
        metrics.update({f"attack/{k}": v for k, v in st.attack.compute().items()})
        metrics["attack/time_per_image_s"] = st.attack_time / max(st.n_images, 1)
    metrics["eval/num_examples"] = st.n_images
    return metrics


@dataclasses.dataclass
class EvalResult:
    """What one evaluation measured.

    ``clean_correct`` / ``adv_correct`` are per-example bools over the evaluated test images, in order (the
    task's ``correct``; ``adv_correct`` only with an attack), e.g. to combine several attacks into a union
    accuracy; ``targets`` are the attack's targets (targeted attacks only); ``meters`` the task meters the
    ``clean/*`` (``clean``) and ``adv/*`` (``adv``, with an attack) metrics were computed from, so that a report
    drawn from them (e.g. per-attribute tables) holds exactly the numbers of ``metrics``."""

    metrics: dict[str, float]
    examples: Examples
    targets: Tensor | None
    clean_correct: Tensor
    adv_correct: Tensor | None
    meters: dict[str, Meter] = dataclasses.field(default_factory=dict)


class Evaluation:
    """One pass over the test split: :meth:`clean_step` and :meth:`attack_step` per batch, :meth:`record` of
    the attack's outcome, :meth:`result` at the end. :func:`evaluate` drives it (with resuming)."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        attack: Attack,
        params: EvalConfig,
        state: EvaluationState,
        file_targets: Tensor | None = None,
        first: int = 0,
        seed: int = 0,
    ):
        self.model, self.task, self.attack, self.params, self.state = model, task, attack, params, state
        self.first, self.seed = first, seed  # position of this part's first image in the evaluation; seed
        self.file_targets = (
            file_targets  # task.target_file rows, one per evaluated image (advlab.data.subset)
        )
        self.run_attack = not isinstance(attack, NoAttack)
        self.lpips_fn = lpips_metric(params.lpips, model) if (self.run_attack and params.lpips) else None

    def clean_step(self, x: Tensor, y: Tensor) -> Tensor:
        st, task = self.state, self.task
        with torch.no_grad(), full_precision(self.model):  # outcomes decided in fp32 (any ``precision``)
            clean_out = self.model(x)
        task.update_metrics(st.clean, clean_out, y)
        st.clean_correct.append(task.correct(clean_out, y))
        if st.examples is None:
            k = self.params.grid_examples
            st.examples = Examples(x[:k].cpu(), y[:k].cpu(), clean_pred=task.predict(clean_out[:k]).cpu())
        st.n_images += x.shape[0]
        return clean_out

    def attack_step(self, x: Tensor, y: Tensor, clean_out: Tensor) -> None:
        st, task, attack = self.state, self.task, self.attack
        if self.file_targets is not None:  # rows of the images of this batch (clean_step has counted them)
            rows = self.file_targets[st.n_images - x.shape[0] : st.n_images]
            target = task.targets_from_file(rows.to(x.device), y)
        else:
            first = self.first + st.n_images - x.shape[0]
            target = keyed_targets(task, y, first, self.seed) if attack.targeted else None
        if target is not None:
            st.targets.append(target.cpu())
        _sync(x.device)
        t0 = time.perf_counter()
        with keyed_random.keyed_by_image(self.seed):  # an image's random start is not its batch's
            x_adv = attack(self.model, x, y, target)
        _sync(x.device)
        st.attack_time += time.perf_counter() - t0
        with torch.no_grad(), full_precision(self.model):
            adv_out = self.model(x_adv)
        y = attack.adv_labels(y)  # e.g. pixels under a patch are not scored
        self.record(x, x_adv, y, target, clean_out, adv_out)

    def record(self, x: Tensor, x_adv: Tensor, y: Tensor, target: Tensor | None, clean_out, adv_out) -> None:
        """Metrics of one attacked batch: the task's under attack, success, distortion on the successes (and
        maxima over all), the attack's own per-sample statistics, the first batch's pictures."""
        st, task, att = self.state, self.task, self.state.attack
        task.update_metrics(st.adv, adv_out, y)
        st.adv_correct.append(task.correct(adv_out, y))
        task.update_attack_metrics(att, clean_out, adv_out, y, target)
        eligible, success = task.attack_outcome(clean_out, adv_out, y, target)
        for name, values in distortion(x, x_adv).items():
            att.add(name, values, mask=eligible & success)
            att.add_max(f"{name}_max", values)
        for name, values in image_quality(x, x_adv).items():  # mse, psnr, ssim on successes
            att.add(name, values, mask=eligible & success)
        if self.lpips_fn is not None:
            with torch.no_grad():
                values = self.lpips_fn(x, x_adv)
            att.add("lpips", values, mask=eligible & success)
            att.add_max("lpips_max", values)
        for name, values in self.attack.batch_stats.items():
            att.add(name, values)
        examples = st.examples
        if examples.x_adv is None:
            k = examples.x.shape[0]
            examples.x_adv = x_adv[:k].cpu()
            examples.adv_pred = task.predict(adv_out[:k]).cpu()
            examples.target = None if target is None else target[:k].cpu()

    def result(self) -> EvalResult:
        st = self.state
        metrics = eval_metrics(st, self.run_attack)
        if st.examples is None:
            raise AdvlabError("evaluation: the test split is empty (check dataset.* and eval.num_examples)")
        return EvalResult(
            metrics,
            st.examples,
            torch.cat(st.targets) if st.targets else None,
            torch.cat(st.clean_correct).cpu(),
            torch.cat(st.adv_correct).cpu() if st.adv_correct else None,
            {"clean": st.clean, **({"adv": st.adv} if self.run_attack else {})},
        )


def evaluate(
    model: nn.Module,
    task: Task,
    data: DataModule,
    attack: Attack,
    params: EvalConfig,
    device: torch.device,
    seed: int,
    progress: bool = True,
    resume_path: Path | None = None,
    checkpoint_every_s: float = 60.0,
    state_path: Path | None = None,
) -> EvalResult:
    """Evaluate ``model`` on the test split, clean and (unless ``attack`` is ``none``) under ``attack``.

    With ``resume_path``, the loop's whole state (:class:`EvaluationState`: meters, RNG, targets, timing, the
    next batch) is written there atomically at most every ``checkpoint_every_s`` seconds, and a restarted
    evaluation continues from it, giving the same result as an uninterrupted one (the test split is read in
    a fixed order).

    Sharding: ``params.shard`` of ``params.num_shards`` evaluates only that contiguous slice of the evaluated
    images (:func:`advlab.data.subset.shard_range`), and under torchrun each rank evaluates its slice of that;
    the ranks' states are gathered and merged (:meth:`EvaluationState.merge`) so every rank returns the
    shard's result. Targets and attack randomness are keyed on each image (:func:`keyed_targets`,
    :mod:`advlab.keyed_random`) and meters keep per-sample values, so the shards merged in order give the
    unsharded run's metrics exactly. ``state_path`` receives the final (merged) state for ``advlab-merge``."""
    model.eval()
    rank, world = distributed.rank_world()
    parts = [(params.shard, params.num_shards), (rank, world)]
    loader, positions, num_images = eval_loader(model, task, data, params, device, seed + 1, parts)
    targeted = not isinstance(attack, NoAttack) and attack.targeted
    file_targets = read_target_file(task, positions.stop) if targeted else None
    if file_targets is not None:
        file_targets = file_targets[positions.start :]
    if not isinstance(attack, NoAttack):
        attack.prepare(model, data)
    gen = torch.Generator().manual_seed(seed)
    if world > 1 and resume_path is not None:  # one resume file per rank
        resume_path = resume_path.with_name(f"{resume_path.stem}_rank{rank}{resume_path.suffix}")
    state = EvaluationState.load(resume_path)
    if state is None:
        state = EvaluationState(
            task.meter(), task.meter(), Meter(), 0.0, 0, None, [], [], [], 0, gen.get_state()
        )
    else:
        logger.info(f"evaluation resumes at batch {state.next_batch}")
    state.to(device)
    ev = Evaluation(model, task, attack, params, state, file_targets, positions.start, seed)
    last_save = time.perf_counter()
    desc = f"attack {attack.registered_name}" if ev.run_attack else "evaluate"
    bar = track(loader, desc, enabled=progress)
    for i, (x, y) in enumerate(bar):
        if i < state.next_batch:
            continue
        if resume_path is not None and time.perf_counter() - last_save >= checkpoint_every_s:
            state.next_batch = i
            state.save(resume_path)
            last_save = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        clean_out = ev.clean_step(x, y)
        if ev.run_attack:
            ev.attack_step(x, y, clean_out)
    state.next_batch = len(loader)
    if world > 1:  # every rank: the shard's state, the ranks' parts merged in rank order
        parts_states = distributed.gather_objects(state.to(torch.device("cpu")))
        state = parts_states[0]
        for other in parts_states[1:]:
            state.merge(other)
        ev.state = state.to(device)
    if state_path is not None and distributed.is_main():
        save_shard_state(state_path, state, ev.run_attack, positions_of_shard(num_images, params), num_images)
    return ev.result()


SHARD_STATE_FORMAT = 1


def positions_of_shard(num_images: int, params: EvalConfig) -> range:
    return nested_range(num_images, [(params.shard, params.num_shards)])


def save_shard_state(
    path: Path, state: EvaluationState, run_attack: bool, positions: range, num_images: int
) -> None:
    """Write an evaluation's final state for ``advlab-merge`` (atomically): the state on the CPU, whether
    the attack ran, which positions of how many evaluated images it covers."""
    from advlab.utils import atomic_torch_save

    cpu = dataclasses.replace(state)
    cpu.to(torch.device("cpu"))
    payload = {
        "format": SHARD_STATE_FORMAT,
        "state": cpu,
        "run_attack": run_attack,
        "positions": [positions.start, positions.stop],
        "num_images": num_images,
    }
    atomic_torch_save(payload, path)
