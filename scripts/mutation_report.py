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
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

DETECTED = frozenset({"killed", "timeout", "caught by type check"})


@dataclass(frozen=True)
class Equivalent:
    """Mutants that behave exactly as the original: no test can tell them apart.

    Matched by what they change, not by mutmut's numbers (those move when the function
    changes): the function (fnmatch on the mutant's name), the lines removed and the lines added
    (the stripped lines of ``mutmut show``, one per line; ``*`` stands for any text).
    """

    function: str
    removed: str
    added: str
    why: str

    def matches(self, name: str, diff: str) -> bool:
        """Whether the mutant ``name`` with this ``diff`` is one of these."""
        lines = [line for line in diff.splitlines() if line[:3] not in {"---", "+++"}]
        removed = [line[1:].strip() for line in lines if line[:1] == "-"]
        added = [line[1:].strip() for line in lines if line[:1] == "+"]
        return (
            fnmatch.fnmatch(name, f"{self.function}__mutmut_*")
            and _like("\n".join(removed), self.removed)
            and _like("\n".join(added), self.added)
        )


def _like(line: str, pattern: str) -> bool:
    """Whether ``line`` is ``pattern``; ``*`` stands for any text, nothing else is special."""
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), line, re.DOTALL) is not None


_DECIMAL = 'msg = "a Decimal: left to the SDK\'s serializer"'
EQUIVALENT = [
    Equivalent(
        "tap_wechat_share.accounts.x_shard_of",
        'digest = hashlib.sha256(app_id.encode("utf-8")).digest()',
        'digest = hashlib.sha256(app_id.encode("UTF-8")).digest()',
        "codec names are case-insensitive",
    ),
    Equivalent(
        "tap_wechat_share.accounts.x_shard_of",
        'return int.from_bytes(digest[:8], "big") % shard_count',
        "return int.from_bytes(digest[:8], ) % shard_count",
        "int.from_bytes's byteorder is big by default (Python 3.11+)",
    ),
    Equivalent(
        "tap_wechat_share.client.x__describe_http_fault",
        'content_type = response.headers.get("Content-Type", "unknown type")',
        'content_type = response.headers.get("*", "unknown type")',
        "response headers are a case-insensitive dict",
    ),
    *(
        Equivalent(
            "tap_wechat_share.output.x__default",
            'return value.isoformat(sep="T")',
            f"return value.isoformat(sep={sep})",
            "isoformat refuses that sep (TypeError) and the SDK's serializer, which then takes "
            "over, writes the same text",
        )
        for sep in ("None", '"XXTXX"')
    ),
    Equivalent(
        "tap_wechat_share.output.x__default",
        _DECIMAL,
        "msg = *",
        "the TypeError is caught: the SDK's serializer takes over; its text is never shown",
    ),
    Equivalent(
        "tap_wechat_share.output.x__default",
        "raise TypeError(msg)",
        "raise TypeError(None)",
        "the TypeError is caught: the SDK's serializer takes over; its text is never shown",
    ),
    Equivalent(
        "tap_wechat_share.streams.xǁDatacubeStreamǁapply_catalog",
        'if set(self.effective_schema.get("properties", {})) != set(self.schema["properties"]):',
        'if set(self.effective_schema.get("properties", None)) != set(self.schema["properties"]):',
        "the SDK's effective schema always has properties: the default is never used",
    ),
    Equivalent(
        "tap_wechat_share.streams.xǁDatacubeStreamǁget_records",
        "result = lookahead.take(task) if lookahead else self.fetch(task)",
        "result = lookahead.take(task) if (lookahead) or True else self.fetch(task)",
        "a run always has its look-ahead (tap.run builds it with the Run); the plain fetch is "
        "for a stream read outside a run",
    ),
    Equivalent(
        "tap_wechat_share.streams.xǁDatacubeStreamǁ_account_plan",
        "self._fail(account, exc)",
        "*",
        "in a run, fail_unusable_bookmarks has already failed every account whose bookmark is "
        "unusable, so read_plan raises nothing here; this is for a stream read outside a run",
    ),
    Equivalent(
        "tap_wechat_share.client.xǁ_WatchedAdapterǁproxy_manager_for",
        "manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)",
        "manager: urllib3.PoolManager = super().proxy_manager_for(proxy, )",
        "requests asks for a proxy's manager with the proxy alone: proxy_kwargs is always empty",
    ),
    Equivalent(
        "tap_wechat_share.accounts.x_make_accounts",
        'count, index = int(config.get("shard_count", 1)), int(config.get("shard_index", 0))',
        'count, index = int(config.get("shard_count", *)), int(config.get("shard_index", *))',
        "the SDK fills in the settings' defaults (shard_count 1, shard_index 0) before any use",
    ),
    Equivalent(
        "tap_wechat_share.accounts.x_make_accounts",
        'timeout = float(config.get("access_token_command_timeout") or 60)',
        'timeout = float(config.get("access_token_command_timeout") or *)',
        "the setting has a default (60) and is refused unless above 0: the fallback is never used",
    ),
    Equivalent(
        "tap_wechat_share.accounts.x__authenticator",
        'return StableTokenAuthenticator(entry.app_id, t.cast("str", entry.value), client)',
        "return StableTokenAuthenticator(entry.app_id, t.cast(*, entry.value), client)",
        "typing.cast does nothing at run time",
    ),
    Equivalent(
        "tap_wechat_share.streams.xǁDatacubeStreamǁfetch",
        "raise EndpointRetiredError(47009, msg)",
        "raise EndpointRetiredError(47009, None)",
        "raised only for windows fetched ahead after the retirement was recorded: the stream "
        "then ends without showing it (the retirement line names the first answer)",
    ),
    Equivalent(
        "tap_wechat_share.output.xǁRecordWriterǁ__init__",
        "allow_nan=False,  # the SDK writes NaN and infinities as null: left to its serializer",
        "allow_nan=None,  # the SDK writes NaN and infinities as null: left to its serializer",
        "None is as false as False",
    ),
    Equivalent(
        "tap_wechat_share.output.xǁRecordWriterǁ__init__",
        "default=_default,\n).encode",
        ").encode",
        "without it, a datetime makes the fast encoder fail and the SDK's serializer, which then "
        "takes over, writes the same text: _default only saves time",
    ),
    Equivalent(
        "tap_wechat_share.output.xǁRecordWriterǁ__init__",
        "self._time: dt.datetime | None = None",
        'self._time: dt.datetime | None = ""',
        "no time_extracted is the empty string either: the first one is formatted all the same",
    ),
    Equivalent(
        "tap_wechat_share.client.x_raise_for_errcode",
        'errcode = body.get("errcode", 0)',
        'errcode = body.get("errcode", None)',
        "no errcode and errcode null are both taken as 0, on the next line",
    ),
    Equivalent(
        "tap_wechat_share.authenticators.xǁAccessTokenAuthenticatorǁ__init__",
        'self._expires_at = float("inf")',
        'self._expires_at = float("INF")',
        'float() reads "INF" as infinity too',
    ),
    Equivalent(
        "tap_wechat_share.client.xǁWeChatClientǁ__init__",
        'self.api_url = api_url.rstrip("/")',
        'self.api_url = api_url.rstrip("XX/XX")',
        "the same for every api_url that does not end in X (WeChat's, and any host's root)",
    ),
    Equivalent(
        "tap_wechat_share.client.xǁWeChatClientǁpost",
        'method="POST",',
        'method="post",',
        "requests writes the method in capitals when it prepares the request",
    ),
    Equivalent(
        "tap_wechat_share.client.xǁWeChatClientǁpost",
        'authenticator.renew(exc.refused_token or "", exc)',
        'authenticator.renew(exc.refused_token or "XXXX", exc)',
        "with no refused token known, any string that is not a token renews alike",
    ),
    Equivalent(
        "tap_wechat_share.client.xǁWeChatClientǁ_send",
        'if try_.reason == "stop":',
        'if try_.reason == "XXstopXX":',
        "the retry loop checks the stop event before anything else: a try ended by a stop "
        "ends the request with the same StopRequestedError",
    ),
    Equivalent(
        "tap_wechat_share.accounts.x__csv_rows",
        "yield where, {column: cell.strip() for column, cell in zip(columns, row, strict=True)}",
        "yield where, {column: cell.strip() for column, cell in zip(columns, row, *)}",
        "the row's length was checked equal to the header's just above",
    ),
    Equivalent(
        "tap_wechat_share.authenticators.xǁCommandTokenAuthenticatorǁ_collect",
        "if remaining <= 0:",
        "if remaining < 0:",
        "at exactly 0 s left the next pass waits 0 s and then gives up: the same end",
    ),
    Equivalent(
        "tap_wechat_share.streams.xǁDatacubeStreamǁapply_catalog",
        "self.TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.ROOT_ONLY",
        "self.TYPE_CONFORMANCE_LEVEL = None",
        "the SDK conforms any level but NONE at the root, and the tap's records are flat",
    ),
    Equivalent(
        "tap_wechat_share.streams.xǁDatacubeStreamǁ_generate_record_messages",
        "self._checked_mask = mask",
        "self._checked_mask = None",
        "the choice of path is then made again for every record: the same choice, slower",
    ),
    Equivalent(
        "tap_wechat_share.streams.xǁDatacubeStreamǁ_generate_record_messages",
        "extracted = self._time_extracted or dt.datetime.now(dt.timezone.utc)",
        "extracted = self._time_extracted or dt.datetime.now(None)",
        "in a run get_records sets the window's time before its records are made: the clock "
        "is read only for a record made outside a run",
    ),
    Equivalent(
        "tap_wechat_share.streams.xǁDatacubeStreamǁ_checkpoint",
        "self.state_manager.is_flushed = False",
        "self.state_manager.is_flushed = None",
        "the SDK only tests it for truth",
    ),
    Equivalent(
        "tap_wechat_share.accounts.x__authenticator",
        'return ReadyTokenAuthenticator(entry.app_id, t.cast("str", entry.value))',
        "return ReadyTokenAuthenticator(entry.app_id, t.cast(*, entry.value))",
        "typing.cast does nothing at run time",
    ),
    Equivalent(
        "tap_wechat_share.tap.xǁTapWeChatShareǁ_selected_streams",
        't.cast("DatacubeStream", stream)',
        "t.cast(*, stream)",
        "typing.cast does nothing at run time",
    ),
    Equivalent(
        "tap_wechat_share.client.x_raise_for_errcode",
        'errcode = body.get("errcode", 0)',
        'errcode = body.get("errcode", )',
        "no errcode and errcode null are both taken as 0, on the next line",
    ),
    Equivalent(
        "tap_wechat_share.client.xǁWeChatClientǁ__init__",
        'self.session.headers["User-Agent"] = "tap-wechat-share"',
        'self.session.headers[*] = "tap-wechat-share"',
        "requests' headers are a case-insensitive dict",
    ),
    Equivalent(
        "tap_wechat_share.client.xǁWeChatClientǁ__init__",
        "timeout: float = 30.0,",
        "timeout: float = *,",
        "the tap always gives request_timeout; only a client made without one uses the default",
    ),
    Equivalent(
        "tap_wechat_share.streams.xǁDatacubeStreamǁparse_rows",
        "named = dict(zip(key_fields, key, strict=True))",
        "named = dict(zip(key_fields, key, strict=False))",
        "a key is made from the key fields: they always have the same length",
    ),
    Equivalent(
        "tap_wechat_share.lookahead.xǁLookAheadǁclose",
        "self._pool.shutdown(wait=False, cancel_futures=True)",
        "self._pool.shutdown(wait=False, *)",
        "every future not started was cancelled one by one just before (the ones ahead, and the "
        "one the reader waited for)",
    ),
    Equivalent(
        "tap_wechat_share.output.xǁRecordWriterǁ__init__",
        'self._time_text = ""',
        "self._time_text = None",
        "it is read only once a time_extracted was formatted into it",
    ),
    Equivalent(
        "tap_wechat_share.tap.xǁTapWeChatShareǁ__init__",
        "self._entries: list[AccountEntry] = []",
        "self._entries: list[AccountEntry] = None",
        "it is only tested for emptiness (None is read as no accounts checked yet, as [] is)",
    ),
    Equivalent(
        "tap_wechat_share.authenticators.x__read_available",
        "chunk = os.read(fd, 65536)",
        "chunk = os.read(fd, 65537)",
        "only the size of each read changes; the loop reads until the pipe is empty",
    ),
]


def explain(name: str) -> str | None:
    """Why the surviving mutant ``name`` is equivalent, or None."""
    diff = get_diff_for_mutant(name)
    return next((e.why for e in EQUIVALENT if e.matches(name, diff)), None)


def sample(size: int, seed: int, patterns: list[str]) -> list[str]:
    """Draw ``size`` mutant names at random from those generated that match ``patterns``."""
    names = sorted(
        name
        for meta in Path("mutants").rglob("*.py.meta")
        for name in json.loads(meta.read_text())["exit_code_by_key"]
        if any(fnmatch.fnmatch(name, p) for p in patterns)
    )
    draw = random.Random(seed)  # noqa: S311 - a reproducible sample, not a secret
    return sorted(draw.sample(names, min(size, len(names))))


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
            if status == "check was interrupted by user":  # stopped by the budget: not tested
                continue
            why = explain(name) if status == "survived" else None
            if why is not None:
                status = "equivalent"
            if status not in DETECTED:
                print(f"{status:>12}  {name}  {why or ''}".rstrip())
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
