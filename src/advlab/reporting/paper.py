"""The ``paper:`` block of an experiment preset: which published table (or advlab's own documented run) a run
reproduces, and the numbers it should give. The run ignores the block; ``advlab-report`` reads it back from the
run folder's ``.hydra/config.yaml`` (or ``results.json``'s ``config``)::

    paper:
      cite: jma                 # the paper: asl_par | eot_patch | semanticadv | jma | pat | advlab, or a
                                # citation key of one (CITE_ALIASES: tondi2024jma, ...)
      table: "Table VII"        # as numbered in the paper ("Fig. 3", "Table C")
      row: "JMA (0.5, 200)"     # optional: the row / column of the table the preset's default run is
      source: paper             # paper | advlab (advlab's own measured reference, embedded presets)
      units: fraction           # fraction | percent: how the numbers below are written
      numbers:                  # advlab metric keys (as in results.json) -> published value
        attack/asr: 0.95
      rows:                     # optional: further rows of the table, chosen by the run's config values
        - row: "JMA (0.1, 200)"  # (dotted keys of the resolved config; the default row when none matches)
          match: {attack.name: jma, attack.step: 0.1}
          numbers: {attack/asr: 0.9}
      note: "..."               # optional; required when there are no numbers (a preset of no published
                                # table, or a table whose numbers the paper text does not give): says why

Units: ``fraction`` means the scale advlab writes (rates in [0, 1]; MSE, iterations, seconds in their own
unit); ``percent`` means rates times 100 (ASL-PAR's mA, PAT's accuracies). The report converts the measured
value to the block's units, so ``delta = measured - paper`` is in the paper's units.

A preset that includes another (``defaults: [asl_par_peta, _self_]``) inherits its block merged key by key:
a number the child's table does not report is set to ``null`` there (dropped); ``rows`` lists are replaced.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from advlab.errors import ConfigError
from advlab.reporting.metric_keys import is_metric_key

#: the papers advlab reproduces (their docs/papers/<page>.md), and ``advlab`` for a preset of none
CITES = ("asl_par", "eot_patch", "semanticadv", "jma", "pat", "advlab")
#: citation keys accepted for a page (``cite: tondi2024jma`` is the JMA paper)
CITE_ALIASES = {
    "tondi2024jma": "jma",
    "qiu2020semanticadv": "semanticadv",
    "laidlaw2021pat": "pat",
    "shekhar2025eotpatch": "eot_patch",
    "aslpar2025": "asl_par",
}
SOURCES = ("paper", "advlab")
UNITS = {"fraction": 1.0, "percent": 100.0}


@dataclasses.dataclass(frozen=True)
class PaperRow:
    row: str
    numbers: dict[str, float]
    match: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PaperBlock:
    cite: str
    table: str
    source: str
    units: str
    rows: tuple[PaperRow, ...]  # the default row first; empty for table: none
    note: str = ""

    @property
    def page(self) -> str:
        """The paper's page (``jma`` for ``cite: tondi2024jma``)."""
        return CITE_ALIASES.get(self.cite, self.cite)

    @property
    def scale(self) -> float:
        return UNITS[self.units]

    def row_for(self, config: dict[str, Any]) -> PaperRow:
        """The last row whose ``match`` values all equal the run's config (dotted keys); else the default row
        (the first)."""
        best = self.rows[0]
        for r in self.rows[1:]:
            if r.match and all(_same(_dotted(config, k), v) for k, v in r.match.items()):
                best = r
        return best


def _dotted(config: dict[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _numbers(node: Any, where: str, errors: list[str]) -> dict[str, float]:
    if node is None:
        return {}
    if not isinstance(node, dict):
        errors.append(f"{where}.numbers: must be a mapping metric key -> number (got {node!r})")
        return {}
    out = {}
    for key, value in node.items():
        if value is None:  # not reported: drops a number a parent preset's block gives
            continue
        if not is_metric_key(str(key)):
            errors.append(
                f"{where}.numbers.{key}: not an advlab metric key (the keys results.json holds, "
                "docs/outputs.md#metric-keys)"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            errors.append(f"{where}.numbers.{key}: must be a finite number (got {value!r})")
            continue
        out[str(key)] = float(value)
    return out


def parse_paper_block(node: Any, where: str = "paper") -> PaperBlock:
    """Check a ``paper:`` block (plain dict/list values); raise one ConfigError listing every problem."""
    errors: list[str] = []
    if not isinstance(node, dict):
        raise ConfigError(
            f"{where}: must be a mapping with cite, table, source, units, numbers (got {node!r})"
        )
    known = {"cite", "table", "row", "source", "units", "numbers", "rows", "note"}
    errors += [
        f"{where}.{k}: unknown key (known: {', '.join(sorted(known))})" for k in node if k not in known
    ]
    if node.get("cite") not in CITES and node.get("cite") not in CITE_ALIASES:
        errors.append(
            f"{where}.cite: must be a paper page ({', '.join(CITES)}) or a citation key of one "
            f"({', '.join(CITE_ALIASES)}) (got {node.get('cite')!r})"
        )
    for key, allowed in (("source", SOURCES), ("units", tuple(UNITS))):
        if node.get(key) not in allowed:
            errors.append(f"{where}.{key}: must be one of {', '.join(allowed)} (got {node.get(key)!r})")
    if not isinstance(node.get("table"), str) or not node.get("table"):
        errors.append(f"{where}.table: the table or figure as numbered in the paper, e.g. 'Table VII'")
    rows = [PaperRow(str(node.get("row") or "default"), _numbers(node.get("numbers"), where, errors))]
    extra = node.get("rows") or []
    if not isinstance(extra, list):
        errors.append(f"{where}.rows: must be a list of {{row, match, numbers}}")
        extra = []
    for i, r in enumerate(extra):
        at = f"{where}.rows[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("row"), str):
            errors.append(f"{at}: must be a mapping with row (a label), match and numbers")
            continue
        match = r.get("match")
        if not isinstance(match, dict) or not match:
            errors.append(
                f"{at}.match: a non-empty mapping of dotted config keys -> value (e.g. attack.step: 0.1)"
            )
            match = {}
        rows.append(PaperRow(r["row"], _numbers(r.get("numbers"), at, errors), dict(match)))
    note = str(node.get("note") or "")
    if not rows[0].numbers and len(rows) == 1:
        if not note.strip():
            errors.append(
                f"{where}.numbers: no published number; give them, or a note saying why the preset has none"
            )
        rows = []
    if errors:
        raise ConfigError(*errors)
    return PaperBlock(
        str(node["cite"]), str(node["table"]), str(node["source"]), str(node["units"]), tuple(rows), note
    )


def preset_paper_node(name: str, experiment_dir: Any = None) -> Any:
    """The ``paper:`` node a run of ``experiment=<name>`` gets: the preset file's own block merged over the
    blocks of the experiment presets its defaults list includes, in Hydra's order (``_self_`` where listed,
    else last). Reads the YAML files only (fast: no Hydra composition); plain dicts, None if no block."""
    from pathlib import Path

    import yaml
    from omegaconf import OmegaConf

    from advlab.config_files import config_dir

    folder = Path(experiment_dir) if experiment_dir is not None else Path(config_dir()) / "experiment"
    data = yaml.safe_load((folder / f"{name}.yaml").read_text()) or {}
    parts: list[Any] = []
    own = {"paper": data["paper"]} if data.get("paper") is not None else {}
    defaults = data.get("defaults") or []
    if "_self_" not in defaults:
        defaults = [*defaults, "_self_"]
    for entry in defaults:
        if entry == "_self_":
            parts.append(own)
        elif isinstance(entry, str) and (folder / f"{entry}.yaml").is_file():
            parent = preset_paper_node(entry, folder)
            parts.append({"paper": parent} if parent is not None else {})
    merged = OmegaConf.to_container(OmegaConf.merge(*[OmegaConf.create(p) for p in parts]))
    return merged.get("paper")
