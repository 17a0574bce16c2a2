"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch
from tiny_world import write_world


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and do not spin-wait when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The tiny instruction world of tests/tiny_world.py (train/valid JSONL, text, tokenizer)."""
    return write_world(tmp_path_factory.mktemp("world"))
