"""ATKD: a reference suite for knowledge distillation of autoregressive language models."""

__version__ = "0.1.0"
