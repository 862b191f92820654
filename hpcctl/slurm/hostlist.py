"""Slurm host and file lists: 'n[1-2],gpu[01-03,7],x' -> n1, n2, gpu01, gpu02, gpu03, gpu7, x (padding kept)."""

from __future__ import annotations

import re

_ITEM = re.compile(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*")
_BRACKET = re.compile(r"^(.*?)\[([^\]]*)\](.*)$")


def expand(expr: str) -> list[str]:
    out: list[str] = []
    for item in _ITEM.findall(expr):
        match = _BRACKET.match(item)
        if not match:
            out.append(item)
            continue
        head, ranges, tail = match.groups()
        for tail_item in expand(tail) if "[" in tail else [tail]:
            for part in ranges.split(","):
                low, _, high = part.partition("-")
                width = len(low)
                out += [f"{head}{n:0{width}d}{tail_item}" for n in range(int(low), int(high or low) + 1)]
    return out
