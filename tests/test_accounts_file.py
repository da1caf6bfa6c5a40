"""Reading ``accounts_file`` in process (the exact accounts, one line per problem), and an
account's failure text.

The CLI tests in test_many_accounts.py show the same lines reach the user before any call;
these run in the test process, where the mutation tests can reach the file readers too.
"""

from __future__ import annotations

import typing as t
import uuid

import pytest

from tap_wechat_share.accounts import Account, AccountEntry, AccountsError, read_entries
from tap_wechat_share.authenticators import ReadyTokenAuthenticator

if t.TYPE_CHECKING:
    from pathlib import Path

HEADER = "the header names app_id and any of app_secret, access_token, access_token_command"
NO_ACCOUNT = "accounts_file {name}: holds no account (a truncated export?); give at least one"


def read(tmp_path: Path, name: str, content: str | bytes, **config: t.Any) -> list[AccountEntry]:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return read_entries({"accounts_file": str(path), **config})


@pytest.mark.parametrize(
    ("name", "content", "config", "expected"),
    [
        (
            # Spaces around cells and header names, blank lines, a row of empty cells.
            "A.CSV",
            " app_id , access_token \n\n wx1 , t1 \n , \nwx2,t2\n",
            {},
            [
                AccountEntry("wx1", "access_token", "t1", "accounts_file A.CSV line 3"),
                AccountEntry("wx2", "access_token", "t2", "accounts_file A.CSV line 5"),
            ],
        ),
        (
            # A byte-order mark, as spreadsheet programs write.
            "c.csv",
            "\ufeffapp_id,access_token_command,app_secret\nwx1,echo t,\nwx2,,s2\n",
            {},
            [
                AccountEntry("wx1", "access_token_command", "echo t", "accounts_file c.csv line 2"),
                AccountEntry("wx2", "app_secret", "s2", "accounts_file c.csv line 3"),
            ],
        ),
        (
            "b.json",
            '[{"app_id": "wx1", "access_token": "t1"}, {"app_id": "wx2"}]',
            {"access_token_command": "cmd"},
            [
                AccountEntry("wx1", "access_token", "t1", "accounts_file b.json item 0"),
                AccountEntry("wx2", None, None, "accounts_file b.json item 1"),
            ],
        ),
        (
            # A quoted cell holds a line break (kept as it is), and the lines after it count it.
            "q.csv",
            'app_id,access_token_command\nwx1,"x=1\necho TOKEN"\r\nwx2,"echo T2"\n',
            {},
            [
                AccountEntry(
                    "wx1", "access_token_command", "x=1\necho TOKEN", "accounts_file q.csv line 2"
                ),
                AccountEntry(
                    "wx2", "access_token_command", "echo T2", "accounts_file q.csv line 4"
                ),
            ],
        ),
    ],
)
def test_an_accounts_file_gives_its_accounts_in_order_with_where_each_was_given(
    tmp_path: Path,
    name: str,
    content: str,
    config: dict[str, t.Any],
    expected: list[AccountEntry],
) -> None:
    assert read(tmp_path, name, content, **config) == expected


@pytest.mark.parametrize(
    ("name", "content", "errors"),
    [
        (
            "a.csv",
            "app_id,app_secret\nwx1,s1\n,s2\n",
            ["accounts_file a.csv line 3: needs an app_id"],
        ),
        (
            "a.csv",
            "app_id,secret\nwx1,s1\n",
            [f"accounts_file a.csv line 1: unknown column(s) secret; {HEADER}"],
        ),
        ("a.csv", "app_secret\ns1\n", [f"accounts_file a.csv line 1: no app_id column; {HEADER}"]),
        ("a.csv", "", ["accounts_file a.csv: is empty; give a header row with app_id"]),
        ("h.csv", "app_id,access_token\n", [NO_ACCOUNT.format(name="h.csv")]),
        ("h.csv", "app_id\n\n , \n", [NO_ACCOUNT.format(name="h.csv")]),
        ("e.json", "[]", [NO_ACCOUNT.format(name="e.json")]),
        (
            "q.csv",
            'app_id,access_token_command\nwx1,"a\nb\nc"\nwx2\n',
            ["accounts_file q.csv line 5: has 1 field(s), the header 2"],
        ),
        (
            "c.csv",
            "app_id,app_secret\nwx00000000000000aa,s1\nwx2,s2\nWX00000000000000AA,s3\n",
            [
                (
                    "accounts_file c.csv line 4: app_id WX00000000000000AA and accounts_file "
                    "c.csv line 2: app_id wx00000000000000aa differ only in case, the same AppID "
                    "twice; keep one, written as WeChat shows it"
                )
            ],
        ),
        (
            "c.json",
            '[{"app_id": "wxAbc", "app_secret": "s"}, {"app_id": "wxaBC", "app_secret": "s"}]',
            [
                (
                    "accounts_file c.json item 1: app_id wxaBC and accounts_file c.json item 0: "
                    "app_id wxAbc differ only in case, the same AppID twice; keep one, written "
                    "as WeChat shows it"
                )
            ],
        ),
        (
            "a.csv",
            "app_id,app_secret\nwx1,s1\nwx1,s2\nwx2,s1,x\nwx3\n",
            [
                "accounts_file a.csv line 4: has 3 field(s), the header 2",
                "accounts_file a.csv line 5: has 1 field(s), the header 2",
                (
                    "accounts_file a.csv line 3: app_id wx1 is listed twice (first at "
                    "accounts_file a.csv line 2)"
                ),
            ],
        ),
        (
            "a.csv",
            "app_id,app_secret\nwx1,\n",
            [
                (
                    "accounts_file a.csv line 2 (wx1): give one of app_secret, access_token or "
                    "access_token_command (the account's credentials), or a top-level "
                    "access_token_command for every account"
                )
            ],
        ),
        (
            "a.json",
            '[{"app_id": "wx1",\n "app_secret": }]',
            ["accounts_file a.json line 2: not valid JSON (Expecting value)"],
        ),
        (
            "a.json",
            '{"app_id": "wx1"}',
            ["accounts_file a.json: must hold a JSON list of accounts"],
        ),
        (
            "a.json",
            '[{"app_id": "wx1", "secret": "s", "zz": 1}, {"app_id": "wx2", "app_secret": "s"}]',
            [
                (
                    "accounts_file a.json item 0: unknown key(s) secret, zz; allowed: app_id, "
                    "app_secret, access_token, access_token_command"
                )
            ],
        ),
        (
            "n.json",
            '[{"app_id": "wx1", "access_token": 12345678}]',
            ["accounts_file n.json item 0 (wx1): access_token must be text"],
        ),
        (
            "a.txt",
            "wx1",
            [
                (
                    "accounts_file: a.txt is neither .json nor .csv; give a JSON list of "
                    "accounts or a CSV file with an app_id column"
                )
            ],
        ),
        (
            "bad.csv",
            b"app_id\n\xff\xfe\n",
            ["accounts_file: {path} cannot be read (UnicodeDecodeError); check it"],
        ),
    ],
)
def test_a_bad_accounts_file_gives_one_exact_line_per_problem(
    tmp_path: Path, name: str, content: str | bytes, errors: list[str]
) -> None:
    with pytest.raises(AccountsError) as raised:
        read(tmp_path, name, content)
    assert raised.value.errors == [e.format(path=tmp_path / name) for e in errors]
    assert str(raised.value) == raised.value.errors[0]


def test_a_missing_accounts_file_is_named_with_the_directory_it_was_looked_for_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AccountsError) as raised:
        read_entries({"accounts_file": "nowhere/a.json"})
    assert raised.value.errors == [
        f"accounts_file: nowhere/a.json does not exist; check the path (from {tmp_path})"
    ]


def test_an_account_failure_names_the_account_once_and_is_kept_free_of_secrets() -> None:
    token = f"ready-{uuid.uuid4().hex}"  # new on every run: the registry is per process
    account = Account("wx1", ReadyTokenAuthenticator("wx1", token))
    assert account.fail(ValueError("wx1 share_hour 2026-11-02: boom")) == (
        "wx1 share_hour 2026-11-02: boom"
    )
    assert account.fail(OSError(f"reset, the token {token}")) == "wx1: reset, the token <redacted>"
    assert account.fail(KeyError()) == "wx1: KeyError"
    assert account.failure == "wx1: KeyError"


def test_accounts_given_in_the_setting_that_differ_only_in_case_are_refused() -> None:
    accounts = [
        {"app_id": "wx00000000000000aa", "app_secret": "s1"},
        {"app_id": "wx00000000000000AA", "app_secret": "s2"},
    ]
    with pytest.raises(AccountsError) as raised:
        read_entries({"accounts": accounts})
    assert raised.value.errors == [
        (
            "accounts[1]: app_id wx00000000000000AA and accounts[0]: app_id wx00000000000000aa "
            "differ only in case, the same AppID twice; keep one, written as WeChat shows it"
        )
    ]
