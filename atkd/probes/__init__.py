"""Token-level probes of the study (PAPER.md section 4): teacher uncertainty and the KD decomposition."""

from atkd.probes.tokens import probe_tokens, register_cli, summarise

__all__ = ["probe_tokens", "register_cli", "summarise"]
