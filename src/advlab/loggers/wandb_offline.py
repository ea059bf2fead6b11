"""Read an offline W&B run file (``<run>/wandb/offline-run-*/run-*.wandb``) without the network.

The file is W&B's record log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0) followed by 32 KiB blocks
of chunks ``crc32c (4) | length (2, LE) | type (1) | data``; types FULL=1, FIRST=2, MIDDLE=3, LAST=4 (a
record split across blocks); a block tail shorter than a chunk header is zero padding. Each record is a
``wandb_internal_pb2.Record``. Used to check what a run really logged (tests, ``wandb sync`` dry checks).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7
CHUNK_HEADER = 7


def iter_records(path: str | Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = HEADER, b""
    while pos + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK_HEADER:
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + CHUNK_HEADER])
        pos += CHUNK_HEADER
        chunk, pos = data[pos : pos + length], pos + length
        if kind == 0 and length == 0:
            continue
        if kind in (1, 2):
            pending = chunk
        else:
            pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def _items(items) -> dict[str, Any]:
    out = {}
    for item in items:
        key = item.key or "/".join(item.nested_key)
        out[key] = json.loads(item.value_json)
    return out


def read_offline_run(path: str | Path) -> dict[str, Any]:
    """``{"history": [row, ...], "summary": {...}, "config": {...}}`` of one offline run file."""
    history, summary, config = [], {}, {}
    for record in iter_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(_items(record.history.item))
        elif kind == "summary":
            summary.update(_items(record.summary.update))
        elif kind == "config":
            config.update(_items(record.config.update))
        elif kind == "run":
            config.update(_items(record.run.config.update))
            summary.update(_items(record.run.summary.update))
    return {"history": history, "summary": summary, "config": config}


def find_offline_runs(run_dir: str | Path) -> list[Path]:
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))
