"""README.md and docs/: the size limit, the paper pages, and every relative link and anchor resolves."""

from __future__ import annotations

import re
import textwrap

import pytest
from conftest import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PAPERS = ("asl_par", "eot_patch", "semanticadv", "jma", "pat")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#+ (.+)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_readme_is_short_and_links_the_docs():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for page in ("docs/extending.md", "docs/outputs.md", *(f"docs/papers/{p}.md" for p in PAPERS)):
        assert (REPO / page).is_file(), page
        assert f"]({page})" in text, f"README.md does not link {page}"


def test_relative_links_and_anchors_resolve():
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):  # http(s):, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                broken.append(f"{page.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_config_option_the_docs_name_exists():
    """``attack=pgd_l2``, ``experiment=jma_voc_5bit``, ``attack@defense.attack=pgd_l2_train`` ... in README.md
    and docs/ name a file of conf/<group>/ (shell variables such as ``..._$m`` are skipped)."""
    option = re.compile(
        r"(?<![\w.])(dataset|victim|attack|defense|pipeline|logger|experiment)(?:@[\w.]+)?=([\w,]+)(?![\w$])"
    )
    missing = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for group, values in option.findall(page.read_text()):
            for value in values.split(","):
                if value and not (REPO / "conf" / group / f"{value}.yaml").is_file():
                    missing.append(f"{page.relative_to(REPO)}: {group}={value}")
    assert not missing, "\n".join(missing)


def python_blocks(page: str) -> list[str]:
    """The ```python blocks of a docs page, de-indented (blocks inside list items are indented)."""
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", (REPO / page).read_text(), flags=re.M | re.S)
    return [textwrap.dedent(code) for _, code in blocks]


def test_extending_examples_run(monkeypatch):
    """docs/extending.md's registry snippet runs as written, and its example attack (the declaration for
    configs.py, then the implementation file) declares, registers, builds with ``ATTACKS.create``, keeps the
    Linf and L2 bounds and the [0, 1] box, raises the objective and names its key in errors."""
    import torch

    from advlab.attacks import ATTACKS, configs
    from advlab.errors import ConfigError

    registry_snippet, declaration, implementation = python_blocks("docs/extending.md")
    exec(compile(registry_snippet, "extending.md: registry", "exec"), {})
    for store in ("_items", "_configs", "_modules"):  # the example exists only for this test
        monkeypatch.setattr(ATTACKS, store, dict(getattr(ATTACKS, store)))
    in_configs = dict(vars(configs))  # the declaration is written inside advlab/attacks/configs.py
    exec(compile(declaration, "extending.md: configs.py", "exec"), in_configs)
    monkeypatch.setattr(configs, "MyAttackConfig", in_configs["MyAttackConfig"], raising=False)
    scope: dict = {}
    exec(compile(implementation, "extending.md: my_attack.py", "exec"), scope)
    assert ATTACKS.module("my_attack") == "advlab.attacks.my_attack" and "my_attack" in ATTACKS.names()
    task = scope_task()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 10, (6,))
    linf = ATTACKS.create("my_attack", task, eps=0.1)
    assert type(linf) is scope["MyAttack"] and linf.paper and linf.url.startswith("https://")
    x_adv = linf(model, x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():  # Linf steps along the gradient sign never lower a convex (linear-model CE) loss
        assert (task.attack_loss(model(x_adv), y) >= task.attack_loss(model(x), y) - 1e-6).all()
    l2 = ATTACKS.create("my_attack", task, eps=0.5, norm="l2")
    assert ((l2(model, x, y) - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all()
    with pytest.raises(ConfigError, match=r"attack\.steps"):
        ATTACKS.create("my_attack", task, steps=0)


def scope_task():
    from advlab.data.info import DataInfo
    from advlab.tasks import TASKS

    names = [str(i) for i in range(10)]
    return TASKS.create("classification", DataInfo(10, (3, 8, 8), names, (0.5,) * 3, (0.5,) * 3))
