"""Where a workflow run's time went: Snakemake's per-job benchmark files summed per rule, as CSV.

Every heavy rule writes `results/benchmarks/<rule>/...tsv` (wall seconds `s`, `cpu_time`, `max_rss`).
On a machine with fewer cores than concurrent jobs, wall times overlap and inflate each other; the CPU
seconds add up to the work itself, which is what bounds a run: total CPU seconds / cores is the shortest
wall time the run could take.

    python benchmarks/workflow_time.py results/benchmarks --cores 2 --out benchmarks/workflow_time.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path


def summarise(bench_dir: Path) -> list[dict]:
    """One row per rule (the first path component under `bench_dir`): jobs, wall, CPU seconds, peak RSS."""
    rows: dict[str, dict] = {}
    for path in sorted(bench_dir.rglob("*.tsv")):
        rule = path.relative_to(bench_dir).parts[0].removesuffix(".tsv")
        with path.open() as f:
            records = list(csv.DictReader(f, delimiter="\t"))
        if not records:
            raise SystemExit(f"{path}: empty benchmark file")
        r = rows.setdefault(rule, {"rule": rule, "jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "max_rss_mb": 0.0})
        for rec in records:
            r["jobs"] += 1
            r["wall_s"] += float(rec["s"])
            r["cpu_s"] += _number(rec.get("cpu_time"))
            r["max_rss_mb"] = max(r["max_rss_mb"], _number(rec.get("max_rss")))
    total_cpu = sum(r["cpu_s"] for r in rows.values()) or 1.0
    out = sorted(rows.values(), key=lambda r: -r["cpu_s"])
    for r in out:
        r["cpu_share"] = r["cpu_s"] / total_cpu
        r["cpu_s_per_job"] = r["cpu_s"] / r["jobs"]
    return out


def _number(value: str | None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # Snakemake writes "NA" where it could not measure
        return 0.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench_dir", type=Path, help="a run's results/benchmarks directory")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores of the machine that ran it")
    ap.add_argument("--out", type=Path, help="CSV to write (default: standard output)")
    args = ap.parse_args(argv)
    if not args.bench_dir.is_dir():
        raise SystemExit(f"{args.bench_dir}: no such directory (run the workflow first)")
    rows = summarise(args.bench_dir)
    fields = ["rule", "jobs", "wall_s", "cpu_s", "cpu_s_per_job", "cpu_share", "max_rss_mb"]
    if args.out:
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        with tmp.open("w", newline="") as f:
            _write(f, rows, fields)
        tmp.replace(args.out)
    else:
        _write(sys.stdout, rows, fields)
    cpu = sum(r["cpu_s"] for r in rows)
    jobs = sum(r["jobs"] for r in rows)
    print(
        f"{jobs} jobs, {cpu / 60:.1f} CPU minutes: at least {cpu / 60 / args.cores:.1f} wall minutes"
        f" on {args.cores} cores",
        file=sys.stderr,
    )


def _write(f, rows: list[dict], fields: list[str]) -> None:
    w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()})


if __name__ == "__main__":
    main()
