"""Summarise the results mutmut keeps in mutants/: the mutants not killed, and the kill rate.

Usage: ``python scripts/mutation_report.py [PATTERN ...]`` (fnmatch patterns of mutant names;
default: all that were tested). Run by ``scripts/mutation``.
"""

from __future__ import annotations

import fnmatch
import json
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
    sys.exit(main(sys.argv[1:] or ["*"]))
