"""States in other shapes, in process: what is taken in, and the exact line that says so.

tests/test_odd_input.py runs the same shapes through the tap (bookmarks read, days asked);
these check :func:`take_in_old_shapes` itself, line by line.
"""

from __future__ import annotations

import copy
import logging
import typing as t

import pytest

from tap_wechat_share.state import take_in_old_shapes

LOGGER = "tests.state_shapes"
DAY = "2026-11-04"
CONTEXT = '{"context": {"app_id": "<AppID>"}, ...}'


def own(app_id: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"context": {"app_id": app_id}, "replication_key": "ref_date", **extra}


@pytest.mark.parametrize(
    ("state", "app_ids", "all_app_ids", "expected", "lines"),
    [
        pytest.param(
            {"partitions": {"wx1": DAY}},
            ["wx1"],
            ["wx1"],
            {},
            [
                (
                    logging.WARNING,
                    (
                        "share_hour: the state's partitions are not a list; they are ignored and "
                        "every account is read from start_date. Correct or remove "
                        "bookmarks.share_hour in the state"
                    ),
                )
            ],
            id="partitions-not-a-list",
        ),
        pytest.param(
            {"replication_key_value": DAY, "replication_key": "ref_date"},
            ["wx1"],
            ["wx1"],
            {"partitions": [own("wx1", replication_key_value=DAY)]},
            [
                (
                    logging.INFO,
                    (
                        f"share_hour: the state's stream-level bookmark {DAY} is used for wx1, the "
                        "run's only account"
                    ),
                )
            ],
            id="stream-level-one-account",
        ),
        pytest.param(
            {"replication_key_value": DAY, "partitions": [own("wx1", replication_key_value=DAY)]},
            ["wx1"],
            ["wx1"],
            {"replication_key_value": DAY, "partitions": [own("wx1", replication_key_value=DAY)]},
            [],
            id="stream-level-beside-the-account's-own",
        ),
        pytest.param(
            {"replication_key_value": DAY},
            ["wx1", "wx2"],
            ["wx1", "wx2"],
            {"replication_key_value": DAY},
            [
                (
                    logging.WARNING,
                    (
                        f"share_hour: the state has a stream-level bookmark ({DAY}) but this run "
                        "reads 2 accounts: it cannot say whose it is, so it is not used, and "
                        "accounts without a bookmark of their own are read from start_date. To "
                        f"use it, put it in a partition {CONTEXT}"
                    ),
                )
            ],
            id="stream-level-two-accounts",
        ),
        pytest.param(
            {"replication_key_value": DAY},
            ["wx1"],
            ["wx1", "wx2"],
            {"replication_key_value": DAY},
            [
                (
                    logging.WARNING,
                    (
                        f"share_hour: the state has a stream-level bookmark ({DAY}) but the "
                        "settings give 2 accounts (this shard reads wx1): it cannot say whose it "
                        "is, so it is not used, and wx1 is read from start_date unless it has a "
                        f"bookmark of its own. To use it, put it in a partition {CONTEXT}"
                    ),
                )
            ],
            id="stream-level-a-shard-s-one-account",
        ),
        pytest.param(
            {"partitions": [{"context": {"app_id": "wx1", "x": 1}, "replication_key_value": DAY}]},
            ["wx1"],
            ["wx1"],
            {"partitions": [own("wx1", replication_key_value=DAY)]},
            [
                (
                    logging.WARNING,
                    (
                        "share_hour: the state's partition {'app_id': 'wx1', 'x': 1} is used for "
                        "wx1 (stored as {'app_id': wx1} from now on)"
                    ),
                )
            ],
            id="extra-context-key",
        ),
        pytest.param(
            {
                "partitions": [
                    {
                        "context": {"app_id": "wx1"},
                        "replication_key": "x",
                        "replication_key_value": DAY,
                    },
                    {"context": {"app_id": "wx2"}},
                    "not a partition",
                ]
            },
            ["wx1", "wx2"],
            ["wx1", "wx2"],
            {
                "partitions": [
                    own("wx1", replication_key_value=DAY),
                    {"context": {"app_id": "wx2"}},
                ]
            },
            [
                (
                    logging.WARNING,
                    (
                        "share_hour: the state's partitions hold 1 item(s) that are not objects "
                        '("not a partition"); they are no bookmark of any account and are left '
                        "out of the state"
                    ),
                )
            ],
            id="other-replication-key",
        ),
        pytest.param(
            {
                "partitions": [
                    {"context": {"app_id": f"WX{i}"}, "replication_key_value": DAY}
                    for i in range(4)
                ]
                + [{"context": {"app_id": 7}}]
            },
            [f"wx{i}" for i in range(4)],
            [f"wx{i}" for i in range(4)],
            {
                "partitions": [own(f"WX{i}", replication_key_value=DAY) for i in range(4)]
                + [{"context": {"app_id": 7}}]
            },
            [
                (
                    logging.WARNING,
                    (
                        "share_hour: 4 account(s) have no bookmark (wx0, wx1, wx2, ...) and are "
                        "read in full from start_date, while the state holds 5 bookmark(s) that "
                        'match no configured account ({"app_id": "WX0"}, {"app_id": "WX1"}, '
                        '{"app_id": "WX2"}, ...). If those are the same accounts written '
                        'differently, correct their contexts to {"app_id": "<AppID>"} and run '
                        "again"
                    ),
                )
            ],
            id="strangers",
        ),
        pytest.param(
            {"partitions": [{"context": {"app_id": "WX1"}, "replication_key_value": DAY}]},
            ["wx1"],
            ["wx1"],
            {"partitions": [own("WX1", replication_key_value=DAY)]},
            [
                (
                    logging.WARNING,
                    (
                        "share_hour: 1 account(s) have no bookmark (wx1) and are read in full from "
                        "start_date, while the state holds 1 bookmark(s) that match no configured "
                        'account ({"app_id": "WX1"}). If those are the same accounts written '
                        'differently, correct their contexts to {"app_id": "<AppID>"} and run again'
                    ),
                )
            ],
            id="one-stranger",
        ),
        pytest.param(
            {"partitions": [{"context": "wx1", "replication_key_value": DAY}]},
            ["wx1"],
            ["wx1"],
            {"partitions": [{"context": "wx1", "replication_key_value": DAY}]},
            [
                (
                    logging.WARNING,
                    (
                        "share_hour: 1 account(s) have no bookmark (wx1) and are read in full "
                        "from start_date, while the state holds 1 bookmark(s) that match no "
                        'configured account ("wx1"). If those are the same accounts written '
                        'differently, correct their contexts to {"app_id": "<AppID>"} and run '
                        "again"
                    ),
                )
            ],
            id="context-not-an-object",
        ),
        pytest.param(
            # Another shard's account: not a stranger, nothing to say.
            {"partitions": [own("wx9", replication_key_value=DAY)]},
            ["wx1"],
            ["wx1", "wx9"],
            {"partitions": [own("wx9", replication_key_value=DAY)]},
            [],
            id="another-shard's",
        ),
    ],
)
def test_a_state_shape_is_taken_in_where_certain_and_named_in_one_line_where_not(  # noqa: PLR0917 - one per column
    caplog: pytest.LogCaptureFixture,
    state: dict[str, t.Any],
    app_ids: list[str],
    all_app_ids: list[str],
    expected: dict[str, t.Any],
    lines: list[tuple[int, str]],
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    stream_state = copy.deepcopy(state)
    take_in_old_shapes(stream_state, "share_hour", app_ids, all_app_ids, logging.getLogger(LOGGER))
    assert stream_state == expected
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER] == lines
