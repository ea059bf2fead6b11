"""The one content-addressed artifact cache: trained victims, trained generators, generated corruptions.

An artifact is named by what determines its content (``key_parts``, any JSON-serialisable dict): the file is
``<cache_dir>/<kind>/<stem>-<hash(key_parts)>.pt``, beside it a ``.json`` sidecar with the key parts (what the
file is), a ``.lock`` (two sweep jobs building the same artifact: the second waits, then loads) and, while it
is being built, a ``.resume.pt`` the builder may use to continue after a kill.

Distributed runs (torchrun): only rank 0 locks, writes and removes files. With ``collective=True`` every rank
runs the builder (e.g. the DDP fit loop, in which all ranks train together) and rank 0 saves the result; with
``collective=False`` rank 0 builds alone while the other ranks wait, then every rank loads the saved file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from advlab import distributed
from advlab.errors import CheckpointError
from advlab.utils import atomic_torch_save, atomic_write_text, file_lock, stable_hash

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One cache entry (see the module docstring for the files it owns)."""

    path: Path
    key: str
    key_parts: dict[str, Any]

    @property
    def resume_path(self) -> Path:
        """Where the builder keeps its resumable state while the artifact is built."""
        return self.path.with_suffix(".resume.pt")

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")


def load_tensor_file(path: Path) -> Any:
    """Tensors (or dicts of them) saved by :class:`ArtifactCache`, read safely on the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


class ArtifactCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def artifact(self, kind: str, stem: str, key_parts: dict[str, Any]) -> Artifact:
        """The entry of kind ``kind`` (a sub-folder, e.g. ``victims``) whose content ``key_parts`` determine."""
        key = stable_hash(key_parts)
        return Artifact(self.root / kind / f"{stem}-{key}.pt", key, key_parts)

    def load_or_build(
        self,
        artifact: Artifact,
        build: Callable[[Path], Any],
        *,
        collective: bool = False,
        load: Callable[[Path], Any] = load_tensor_file,
    ) -> tuple[Any, bool]:
        """The artifact's content and whether it came from the cache.

        On a miss, ``build(resume_path)`` makes the content (a tensor or a dict of tensors); it is saved
        atomically with its sidecar, and the resume file is removed."""
        main = distributed.is_main()
        with file_lock(artifact.path.with_suffix(".lock")) if main else contextlib.nullcontext():
            if distributed.broadcast(artifact.path.is_file()):
                return self._load(artifact, load), True
            content = build(artifact.resume_path) if (collective or main) else None
            if main:
                atomic_torch_save(content, artifact.path)
                atomic_write_text(
                    artifact.sidecar, json.dumps(artifact.key_parts, indent=2, sort_keys=True, default=str)
                )
                artifact.resume_path.unlink(missing_ok=True)
            distributed.barrier()
            if content is None:  # a waiting rank of a non-collective build
                content = self._load(artifact, load)
            return content, False

    @staticmethod
    def _load(artifact: Artifact, load: Callable[[Path], Any]) -> Any:
        try:
            return load(artifact.path)
        except Exception as exc:  # a truncated copy, a file from an incompatible version, ...
            raise CheckpointError(
                f"cached file '{artifact.path}' cannot be read ({type(exc).__name__}: {str(exc)[:200]}); "
                f"delete it (and '{artifact.sidecar.name}') to rebuild it"
            ) from exc
