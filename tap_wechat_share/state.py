"""Bookmarks in the Singer state: found in constant time, read strictly, and old shapes taken in.

The tap writes, per stream, one partition per account::

    {"context": {"app_id": "wx..."}, "replication_key": "ref_date",
     "replication_key_value": "2026-11-27"}

The bookmark is the last day read completely, a date ``YYYY-MM-DD`` and nothing else.

- A bookmark that is not such a date, or that is later than the latest day WeChat has published,
  stops that account with a message saying what to do (a silent full read, or a run that is "up
  to date" forever, would be worse).
- A missing or null ``replication_key`` beside a bookmark is the stream's key (``ref_date``).
- A stream-level bookmark without partitions (a hand-written state) is used for the only account
  the settings give; with several accounts (in this run, or in all shards) nobody can say whose it
  is: a warning names it and says that a full read follows.
- A partition whose context holds the account's app_id and other keys is used for that account.
- When accounts have no bookmark while the state holds bookmarks that match no configured
  account, a warning names both: a full read follows for those accounts.
- Partitions of accounts that this run does not read (other shards', removed accounts') are kept
  as they are, duplicates included; two partitions of an account this run reads stop that
  account. An item of ``partitions`` that is not an object is left out, with a warning.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import typing as t

from singer_sdk.streams._state import StreamStateManager

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Collection, Mapping, Sequence

    from singer_sdk.helpers import types

REPLICATION_KEY = "ref_date"
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_EXAMPLES = 3


class StateError(ValueError):
    """A bookmark in the state the tap will not use; the text says what to do."""


class IndexedStateManager(StreamStateManager):
    """The SDK's stream state manager, finding a partition's state by a dict lookup.

    The SDK (0.54) finds a partition by scanning the stream's list of partitions, once or more
    per partition and per STATE: quadratic in accounts. This returns the very same dict the SDK
    would (creating it the same way when missing), from an index on the contexts that is rebuilt
    whenever the list is not the one indexed or has changed length. ``tests/test_state.py``
    compares it with the SDK's own for the same states, byte for byte.
    """

    def __init__(self, **kwargs: t.Any) -> None:  # noqa: ANN401 - the SDK's own arguments
        """Start with no index: it is built on the first lookup."""
        super().__init__(**kwargs)
        self._indexed: list[dict[str, t.Any]] | None = None
        self._indexed_length = 0
        self._index: dict[tuple[tuple[str, t.Any], ...], dict[str, t.Any]] = {}
        self._duplicates: dict[tuple[tuple[str, t.Any], ...], list[dict[str, t.Any]]] = {}

    def get_context_state(self, context: types.Context | None) -> dict[str, t.Any]:
        """Return the writable state of ``context``'s partition (the stream's without one).

        Args:
            context: The partition, e.g. ``{"app_id": "wx..."}``.

        Returns:
            The partition's state dict, created if missing.

        Two partitions with this context are refused by :meth:`find_context_state`, which the
        stream asks first (the account fails); here the first of them is returned, so that the
        SDK's own lookups of a failed account do not end the run.
        """
        partition = self.get_state_partition_context(context)
        if not partition:
            return self.stream_state
        key = _key(partition)
        if key is None:  # a context that cannot be a dict key: the SDK's own path
            return super().get_context_state(context)
        partitions: list[dict[str, t.Any]] = self.stream_state.setdefault("partitions", [])
        if partitions is not self._indexed or len(partitions) != self._indexed_length:
            self._reindex(partitions)
        found = self._index.get(key)  # the first of duplicates: refused at find_context_state
        if found is None:
            found = {"context": dict(partition)}
            partitions.append(found)
            self._index[key] = found
            self._indexed_length += 1
        return found

    def find_context_state(self, context: types.Context) -> dict[str, t.Any] | None:
        """Return ``context``'s partition state if the state has one, creating nothing.

        Raises:
            ValueError: If the state holds two partitions with this context (as the SDK does).
        """
        stream_state = self.tap_state.get("bookmarks", {}).get(self.stream_name)
        partitions = stream_state.get("partitions") if isinstance(stream_state, dict) else None
        if not isinstance(partitions, list):
            return None
        partition = self.get_state_partition_context(context)
        key = _key(partition)
        if key is None:
            return None
        if partitions is not self._indexed or len(partitions) != self._indexed_length:
            self._reindex(partitions)
        return self._lookup(key, partition)

    def _reindex(self, partitions: list[dict[str, t.Any]]) -> None:
        """Index the partitions by context; items that are not objects are left alone.

        Duplicates are refused when their context is looked up (as the SDK does), not here:
        those of an account this run does not read are kept as they are (see
        :meth:`find_context_state`).
        """
        index: dict[tuple[tuple[str, t.Any], ...], dict[str, t.Any]] = {}
        duplicates: dict[tuple[tuple[str, t.Any], ...], list[dict[str, t.Any]]] = {}
        for state in partitions:
            key = _key(state.get("context")) if isinstance(state, dict) else None
            if key is None:
                continue
            if key in index:
                duplicates.setdefault(key, [index[key]]).append(state)
            else:
                index[key] = state
        self._index = index
        self._duplicates = duplicates
        self._indexed = partitions
        self._indexed_length = len(partitions)

    def _lookup(
        self, key: tuple[tuple[str, t.Any], ...], context: types.Context | None
    ) -> dict[str, t.Any] | None:
        if (found := self._duplicates.get(key)) is not None:
            msg = (
                "State file contains duplicate entries for partition: "
                f"{context}.\nMatching state values were: {found!s}"
            )
            raise ValueError(msg)
        return self._index.get(key)


def _key(context: object) -> tuple[tuple[str, t.Any], ...] | None:
    if not isinstance(context, dict):
        return None
    try:
        key = tuple(sorted(context.items()))
        hash(key)
    except TypeError:
        return None
    return key


def read_bookmark(
    partition_state: dict[str, t.Any], stream: str, app_id: str, latest: dt.date
) -> dt.date | None:
    """Return an account's bookmark (the last day read completely), or None if it has none.

    Args:
        partition_state: The account's partition state in ``stream``.
        stream: The stream's name, for messages.
        app_id: The account, for messages.
        latest: The latest day WeChat has published.

    Returns:
        The bookmarked day, or None.

    Raises:
        StateError: For a bookmark that is not a ``YYYY-MM-DD`` date, or is later than
            ``latest``.
    """
    value = partition_state.get("replication_key_value")
    if value is None:
        return None
    where = f"the state's bookmark for {stream} {app_id}"
    fix = "correct it or remove that partition from the state (meltano state edit), then run again"
    day: dt.date | None = None
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            day = None
    if day is None:
        msg = f"{where} is {json.dumps(value)}, not a date written YYYY-MM-DD; {fix}"
        raise StateError(msg)
    if day > latest:
        msg = (
            f"{where} is {value}, later than the latest day WeChat has published ({latest}); {fix}"
        )
        raise StateError(msg)
    return day


def take_in_old_shapes(  # noqa: C901
    stream_state: dict[str, t.Any],
    stream: str,
    app_ids: Sequence[str],
    all_app_ids: Collection[str],
    logger: logging.Logger,
) -> None:
    """Bring a stream's state into the tap's shape where that is certain; warn where it is not.

    Args:
        stream_state: The stream's state (``bookmarks[stream]``), changed in place.
        stream: The stream's name.
        app_ids: The accounts this run reads.
        all_app_ids: Every account the settings give (all shards).
        logger: Where warnings go.
    """
    partitions = stream_state.get("partitions")
    if partitions is not None and not isinstance(partitions, list):
        logger.warning(
            "%s: the state's partitions are not a list; they are ignored and every account is "
            "read from start_date. Correct or remove bookmarks.%s in the state",
            stream,
            stream,
        )
        stream_state.pop("partitions")
        partitions = None
    _leave_out_non_objects(stream_state, stream, logger)
    partitions = [p for p in partitions or [] if isinstance(p, dict)]
    own = {p["context"]["app_id"]: p for p in partitions if _is_own(p.get("context"))}

    level_value = stream_state.get("replication_key_value")
    if level_value is not None:
        # The settings' only account, not a shard's: in a shard it may be anyone's bookmark.
        if len(all_app_ids) <= 1 and len(app_ids) == 1 and app_ids[0] not in own:
            stream_state.pop("replication_key", None)
            stream_state.pop("replication_key_value")
            stream_state.setdefault("partitions", []).append(
                {
                    "context": {"app_id": app_ids[0]},
                    "replication_key": REPLICATION_KEY,
                    "replication_key_value": level_value,
                }
            )
            own[app_ids[0]] = stream_state["partitions"][-1]
            logger.info(
                "%s: the state's stream-level bookmark %s is used for %s, the run's only account",
                stream,
                level_value,
                app_ids[0],
            )
        elif len(app_ids) == 1 and len(all_app_ids) > 1 and app_ids[0] not in own:
            logger.warning(
                "%s: the state has a stream-level bookmark (%s) but the settings give %d "
                "accounts (this shard reads %s): it cannot say whose it is, so it is not used, "
                "and %s is read from start_date unless it has a bookmark of its own. To use it, "
                'put it in a partition {"context": {"app_id": "<AppID>"}, ...}',
                stream,
                level_value,
                len(all_app_ids),
                app_ids[0],
                app_ids[0],
            )
        elif len(app_ids) > 1:
            logger.warning(
                "%s: the state has a stream-level bookmark (%s) but this run reads %d accounts: "
                "it cannot say whose it is, so it is not used, and accounts without a bookmark "
                "of their own are read from start_date. To use it, put it in a partition "
                '{"context": {"app_id": "<AppID>"}, ...}',
                stream,
                level_value,
                len(app_ids),
            )

    for state in partitions:
        context = state.get("context")
        if _is_own(context) or not isinstance(context, dict):
            continue
        app_id = context.get("app_id")
        if isinstance(app_id, str) and app_id in app_ids and app_id not in own:
            logger.warning(
                "%s: the state's partition %s is used for %s (stored as {'app_id': %s} from now "
                "on)",
                stream,
                context,
                app_id,
                app_id,
            )
            state["context"] = {"app_id": app_id}
            own[app_id] = state

    for state in own.values():
        if state.get("replication_key") != REPLICATION_KEY and "replication_key_value" in state:
            state["replication_key"] = REPLICATION_KEY

    missing = [
        app_id for app_id in app_ids if own.get(app_id, {}).get("replication_key_value") is None
    ]
    strangers = [
        p.get("context")
        for p in partitions
        if not (_is_own(p.get("context")) and p["context"]["app_id"] in all_app_ids)
    ]
    if missing and strangers:
        logger.warning(
            "%s: %d account(s) have no bookmark (%s) and are read in full from start_date, while "
            "the state holds %d bookmark(s) that match no configured account (%s). If those are "
            'the same accounts written differently, correct their contexts to {"app_id": '
            '"<AppID>"} and run again',
            stream,
            len(missing),
            ", ".join(missing[:_EXAMPLES]) + (", ..." if len(missing) > _EXAMPLES else ""),
            len(strangers),
            ", ".join(json.dumps(c) for c in strangers[:_EXAMPLES])
            + (", ..." if len(strangers) > _EXAMPLES else ""),
        )


def leave_out_non_objects(state: Mapping[str, t.Any], logger: logging.Logger) -> None:
    """Take out of every stream's partitions (in place) the items that are not objects.

    The SDK reads every item of the lists as an object, in every stream of the state, selected
    or not: such an item would end the run with a traceback. Each stream's are named in a
    warning.

    Args:
        state: The tap's state.
        logger: Where warnings go.
    """
    bookmarks = state.get("bookmarks")
    for stream, stream_state in (bookmarks if isinstance(bookmarks, dict) else {}).items():
        if isinstance(stream_state, dict):
            _leave_out_non_objects(stream_state, stream, logger)


def _leave_out_non_objects(
    stream_state: dict[str, t.Any], stream: str, logger: logging.Logger
) -> None:
    partitions = stream_state.get("partitions")
    if not isinstance(partitions, list):
        return
    if odd := [p for p in partitions if not isinstance(p, dict)]:
        stream_state["partitions"] = [p for p in partitions if isinstance(p, dict)]
        logger.warning(
            "%s: the state's partitions hold %d item(s) that are not objects (%s); they are no "
            "bookmark of any account and are left out of the state",
            stream,
            len(odd),
            ", ".join(json.dumps(p, default=str) for p in odd[:_EXAMPLES])
            + (", ..." if len(odd) > _EXAMPLES else ""),
        )


def _is_own(context: object) -> bool:
    return (
        isinstance(context, dict)
        and set(context) == {"app_id"}
        and isinstance(context.get("app_id"), str)
    )
