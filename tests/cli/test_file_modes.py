"""Files advlab writes through its atomic writers get the mode a plain ``open()`` would: ``0o666 & ~umask``."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from advlab.utils import atomic_torch_save, atomic_write_text


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    saved = os.umask(0o022)
    os.umask(saved)
    yield set_mask
    os.umask(saved)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writers_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    atomic_write_text(tmp_path / "results.json", "{}")
    atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "victims" / "cached.pt")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what the rest of the run folder gets
    for path in (tmp_path / "results.json", tmp_path / "victims" / "cached.pt"):
        assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE(plain.stat().st_mode), path
    assert torch.load(tmp_path / "victims" / "cached.pt")["w"].shape == (2,)
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # no temporary file left behind
