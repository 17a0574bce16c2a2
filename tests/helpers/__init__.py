"""Shared test helpers: a tiny world and training configs, Snakemake runners, plain reference losses."""
