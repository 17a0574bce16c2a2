"""Token-level probes of the study (docs/study.md): teacher uncertainty and the KD decomposition."""

import argparse

from atkd.probes import landscape as landscape_module
from atkd.probes import sparse as sparse_module
from atkd.probes import tokens as tokens_module
from atkd.probes.tokens import probe_tokens, summarise

__all__ = ["probe_tokens", "register_cli", "summarise"]


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add `atkd probe`, `atkd landscape` and `atkd sparse-accuracy`."""
    tokens_module.register_cli(subparsers)
    landscape_module.register_cli(subparsers)
    sparse_module.register_cli(subparsers)
