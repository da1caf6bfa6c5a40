"""Summarise the results mutmut keeps in mutants/: the mutants not killed, and the kill rate.

Usage (run by ``scripts/mutation``):

- ``python scripts/mutation_report.py [PATTERN ...]``: the report, for the tested mutants whose
  names match a PATTERN (fnmatch; default: all);
- ``python scripts/mutation_report.py --sample N SEED [PATTERN ...]``: print the names of N
  mutants drawn at random (reproducibly, from SEED) from those matching, one per line.
"""

from __future__ import annotations

import fnmatch
import json
import random
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

DETECTED = frozenset({"killed", "timeout", "caught by type check"})
_C = "tap_wechat_share.client.xǁWeChatClientǁ"
_S = "tap_wechat_share.streams."
EQUIVALENT: dict[str, str] = {
    # Mutant name: why no test can tell it from the original (the behaviour is the same).
    # Names are mutmut's for the code they were found in: after a change of the function,
    # check again with `mutmut show NAME`.
    f"{_C}__init____mutmut_16": "pool_connections: one host per client, any value is the same",
    f"{_C}__init____mutmut_18": "pool_connections: one host per client, any value is the same",
    f"{_C}__init____mutmut_24": "requests matches adapter prefixes case-insensitively",
    f"{_C}__init____mutmut_30": "requests matches adapter prefixes case-insensitively",
    f"{_C}__init____mutmut_33": "headers are a case-insensitive dict",
    f"{_C}__init____mutmut_34": "headers are a case-insensitive dict",
    f"{_C}__init____mutmut_48": "full_jitter is backoff's default jitter",
    f"{_C}_post_once__mutmut_3": "requests drops a query parameter whose value is None",
    f"{_S}x__as_int__mutmut_3": "the type() fast path: isinstance() below gives the same answer",
    f"{_S}xǁDatacubeStreamǁparse_rows__mutmut_49": "zip's strict: key and fields always match",
    f"{_S}xǁDatacubeStreamǁparse_rows__mutmut_52": "zip's strict: key and fields always match",
}


def sample(size: int, seed: int, patterns: list[str]) -> list[str]:
    """Draw ``size`` mutant names at random from those generated that match ``patterns``."""
    names = sorted(
        name
        for meta in Path("mutants").rglob("*.py.meta")
        for name in json.loads(meta.read_text())["exit_code_by_key"]
        if any(fnmatch.fnmatch(name, p) for p in patterns)
    )
    return sorted(random.Random(seed).sample(names, min(size, len(names))))


def main(patterns: list[str]) -> int:
    """Print every tested mutant that was not killed, then the kill rate per file and in all."""
    totals: Counter[str] = Counter()
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        source = str(meta.relative_to("mutants"))[: -len(".meta")]
        counts: Counter[str] = Counter()
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if exit_code is None or not any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            status = status_by_exit_code[exit_code]
            if status == "survived" and name in EQUIVALENT:
                status = "equivalent"
            if status not in DETECTED:
                print(f"{status:>12}  {name}  {EQUIVALENT.get(name, '')}".rstrip())
            counts[status] += 1
        if counts:
            totals += counts
            print(f"  {source}: {_rate(counts)}")
    if not totals:
        print("no mutant tested yet")
        return 1
    print(f"total: {_rate(totals)}")
    return 0


def _rate(counts: Counter[str]) -> str:
    tried = sum(counts.values())
    detected = sum(counts[s] for s in DETECTED)
    explained = detected + counts["equivalent"]
    others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in DETECTED)
    return (
        f"{tried} tested, {detected} killed ({100 * detected / tried:.1f}%, "
        f"{counts['timeout']} by timeout), {100 * explained / tried:.1f}% killed or explained"
        + (f"; {others}" if others else "")
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sample"]:
        size, seed, *given = sys.argv[2:]
        print("\n".join(sample(int(size), int(seed), given or ["*"])))
    else:
        sys.exit(main(sys.argv[1:] or ["*"]))
