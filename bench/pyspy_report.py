"""Summarize a `py-spy record --idle --threads --format raw` profile: `python -m bench.pyspy_report RAW [--top N]`.

For each thread group (``MainThread``; worker threads grouped by name without their number,
e.g. ``wbsync-fetch``), prints the frames with the largest inclusive share of that group's
samples, and the leaf (self) frames. With ``--idle``, a sample is taken whether the thread runs
or waits, so the main thread's shares are shares of wall time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

_THREAD = re.compile(r"thread \(\d+\): (.*?)(?:_\d+)?$")


def parse(path: str) -> dict[str, list[tuple[list[str], int]]]:
    groups: dict[str, list[tuple[list[str], int]]] = defaultdict(list)
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            frames = stack.split(";")
            match = _THREAD.match(frames[0])
            name = match.group(1) if match else frames[0]
            groups[name].append((frames[1:], int(count)))
    return groups


def short(frame: str) -> str:
    return frame.replace("/tmp/venv/lib/python3.11/site-packages/", "")


def report(groups: dict[str, list[tuple[list[str], int]]], top: int, functions: bool) -> list[str]:
    lines: list[str] = []
    for name, stacks in sorted(groups.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        total = sum(c for _, c in stacks)
        inclusive: Counter[str] = Counter()
        leaf: Counter[str] = Counter()
        for frames, count in stacks:
            keys = [_function(f) for f in frames] if functions else frames
            for key in set(keys):
                inclusive[key] += count
            if keys:
                leaf[keys[-1]] += count
        lines.append(f"== {name}: {total} samples")
        lines.append("  inclusive:")
        for frame, count in inclusive.most_common(top):
            lines.append(f"    {100 * count / total:5.1f}%  {short(frame)}")
        lines.append("  self (leaf):")
        for frame, count in leaf.most_common(top // 2):
            lines.append(f"    {100 * count / total:5.1f}%  {short(frame)}")
    return lines


def _function(frame: str) -> str:
    """``f (file.py:12)`` -> ``f (file.py)``: one row per function instead of per line."""
    return re.sub(r":\d+\)$", ")", frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("raw")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--functions", action="store_true", help="merge the lines of each function")
    parser.add_argument("--threads", default="", help="comma-separated thread groups to show (default all)")
    args = parser.parse_args()
    groups = parse(args.raw)
    if args.threads:
        wanted = set(args.threads.split(","))
        groups = {k: v for k, v in groups.items() if k in wanted}
    print("\n".join(report(groups, args.top, args.functions)))


if __name__ == "__main__":
    main()
