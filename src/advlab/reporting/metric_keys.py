"""Which strings are advlab metric keys, read from the code that writes them (no hand list).

Two things are collected by walking the syntax trees of ``src/advlab``:

- metric *names*: what the tasks' meters, the distortion / image-quality metrics and the attacks' per-sample
  statistics call their values: the literal (or f-string) name passed to ``Meter.add`` / ``add_max``, the
  string keys of dict literals and subscript stores in ``tasks/`` and ``metrics/`` (e.g. ``"mIoU"``,
  ``"mse"``), and the ``batch_stats[...]`` keys of ``attacks/``;
- key *templates*: the dict keys and subscript stores with a ``/`` written by ``loops/evaluate.py`` and the
  pipelines (e.g. ``f"clean/{k}"``, ``f"transfer/{source}/{target}/{k}"``, ``f"attack/asr_g{g}_t{t}"``), and
  a per-case template without its last ``_{...}`` suffix (the mean over cases, written under the bare key).

A key is valid when it matches a template in which every placeholder is one path component, except a
placeholder that ends the template: that one takes the rest of the key, which must be a metric name or itself
a valid key (``transfer/a/b/adv/mIoU``: ``transfer/{source}/{target}/{k}`` with ``k = adv/mIoU``, itself
``adv/{k}`` with ``k = mIoU``). A typo (``attack/bsar``, ``clean/miou``) is therefore refused.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
#: where metric names come from (task meters, distortion metrics, attack statistics)
NAME_SOURCES = ("tasks", "metrics", "attacks", "loops/evaluate.py")
#: where full keys (phase prefixes, pipeline keys) are written
KEY_SOURCES = ("loops/evaluate.py", "loops/universal.py", "pipelines")
_ANY = "\0"  # a formatted value inside an f-string


@dataclass(frozen=True)
class Template:
    pattern: re.Pattern
    open_tail: bool  # the template ends with a placeholder: the rest must be a name or a key


def _files(parts: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        p = PACKAGE / part
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def _text(node: ast.AST) -> str | None:
    """A string constant as is; an f-string with its formatted values as ``_ANY``; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                out.append(str(v.value))
            else:
                out.append(_ANY)
        return "".join(out)
    return None


def _key_nodes(tree: ast.AST) -> list[ast.AST]:
    """Dict-literal keys, dict-comprehension keys and subscript-store slices of a module."""
    nodes: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            nodes += [k for k in node.keys if k is not None]
        elif isinstance(node, ast.DictComp):
            nodes.append(node.key)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            nodes += [t.slice for t in targets if isinstance(t, ast.Subscript)]
    return nodes


def _plain_name(text: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_\0][A-Za-z0-9_./\0-]*", text)) and text != _ANY


def _to_regex(text: str) -> str:
    return "".join("[^/]+" if c == _ANY else re.escape(c) for c in text)


@functools.cache
def metric_names() -> tuple[re.Pattern, ...]:
    """Regexes of every metric name (the part after the phase, e.g. ``mIoU``, ``iou/<class>``, ``linf_max``)."""
    names: set[str] = set()
    for path in _files(NAME_SOURCES):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("add", "add_max")
                and node.args
            ):
                text = _text(node.args[0])
                if text and _plain_name(text):
                    names.add(text)
        if path.parent.name in ("tasks", "metrics"):  # names a meter's compute() returns
            for node in _key_nodes(tree):
                text = _text(node)
                if text and _plain_name(text):
                    names.add(text)
        for node in ast.walk(tree):  # attacks' per-sample statistics: self.batch_stats["iters"] = ...
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "batch_stats"
            ):
                text = _text(node.slice)
                if text and _plain_name(text):
                    names.add(text)
    return tuple(re.compile(_to_regex(n)) for n in sorted(names))


@functools.cache
def key_templates() -> tuple[Template, ...]:
    """Every key shape the evaluate loop and the pipelines write."""
    found: set[str] = set()
    for path in _files(KEY_SOURCES):
        for node in _key_nodes(ast.parse(path.read_text())):
            text = _text(node)
            if text and "/" in text and _plain_name(text) and not text.startswith("/"):
                found.add(text)
    # a per-case key ``attack/instance_success_{c}`` whose mean over the cases is written without the suffix
    # (pipelines/semantic_adv_street.py ``overall_metrics``): the key without a trailing ``_{...}`` too
    found |= {t[: -len("_" + _ANY)] for t in found if t.endswith("_" + _ANY) and not t.endswith("/_" + _ANY)}
    out = []
    for text in sorted(found):
        open_tail = text.endswith(_ANY) and text.rsplit("/", 1)[-1] == _ANY
        body = text[: -len(_ANY)] if open_tail else text
        out.append(Template(re.compile(_to_regex(body) + ("(?P<tail>.+)" if open_tail else "")), open_tail))
    return tuple(out)


@functools.cache
def is_metric_key(key: str) -> bool:
    """Whether ``key`` is a key advlab writes into ``results.json`` (``metrics``)."""
    for t in key_templates():
        m = t.pattern.fullmatch(key)
        if m is None:
            continue
        if not t.open_tail:
            return True
        tail = m.group("tail")
        if is_metric_name(tail) or ("/" in tail and is_metric_key(tail)):
            return True
    return False


def is_metric_name(name: str) -> bool:
    return any(p.fullmatch(name) for p in metric_names())
