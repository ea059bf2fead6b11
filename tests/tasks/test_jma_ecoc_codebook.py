"""JMA issue: ``task.first_row`` of the ECOC task. The authors' codebooks (``ECOC/<task>/hadamard16.npy``,
``hadamard32.npy``) are Sylvester's Hadamard matrix (scipy.linalg.hadamard) with class k on row k; advlab's
default skips the all-ones row."""

from __future__ import annotations

import pytest
import scipy.linalg
import torch

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.tasks.base import TASKS
from advlab.tasks.configs import ECOCConfig


def ecoc(classes: int, **params):
    info = DataInfo(classes, (3, 4, 4), [str(i) for i in range(classes)], (0.0,) * 3, (1.0,) * 3)
    return TASKS.create("ecoc", info, **params)


@pytest.mark.parametrize("classes,length", [(10, 16), (32, 32)])
def test_first_row_zero_is_the_official_codebook(classes, length):
    official = torch.tensor(scipy.linalg.hadamard(length)[:classes], dtype=torch.float32)
    assert torch.equal(ecoc(classes, code_length=length, first_row=0).codebook, official)


def test_default_skips_the_all_ones_row_and_bad_rows_are_errors():
    code = ecoc(10, code_length=16).codebook
    assert torch.equal(code, torch.tensor(scipy.linalg.hadamard(16)[1:11], dtype=torch.float32))
    with pytest.raises(ConfigError, match="task.first_row: rows 7..16"):
        ecoc(10, code_length=16, first_row=7)
    with pytest.raises(ConfigError, match="task.first_row"):
        ECOCConfig(name="ecoc", first_row=-1).validate("task")
