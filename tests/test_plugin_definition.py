"""``plugin.yml``: the tap's plugin definition in Meltano Hub's format, the one source of truth.

It must say what the tap itself reports (``--about``: its settings, their types, defaults, which are
secret, their descriptions; its capabilities), and ``meltano.yml``'s plugin block must be the same
definition with ``pip_url: -e .`` (``scripts/plugin-block`` writes it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from meltano.core.setting_definition import SettingKind
from ruamel.yaml import YAML

from tests.conftest import ROOT, TAP_EXECUTABLE

if TYPE_CHECKING:
    from pathlib import Path

HUB_KEYS = (
    "name",
    "namespace",
    "label",
    "pip_url",
    "executable",
    "description",
    "capabilities",
    "settings_group_validation",
    "settings",
)
"""The definition's keys, in the order Meltano writes them to ``meltano.yml``."""

SETTING_KEYS = {"name", "kind", "value", "label", "description", "sensitive"}
# Settings the SDK adds for the capabilities stream-maps and schema-flattening: Meltano knows them
# from the capabilities, so a plugin definition does not list them.
SDK_SETTINGS = {
    "stream_maps",
    "stream_map_config",
    "faker_config",
    "flattening_enabled",
    "flattening_max_depth",
    "flattening_max_key_length",
    "flattening_separator",
}
# A number is kind integer: with Meltano 4.4's kind decimal, any value given by an environment
# variable makes a Decimal that Meltano cannot write into the tap's config ("Object of type Decimal
# is not JSON serializable", tried with `meltano invoke --dump=config`). A fraction
# (state_message_interval: 0.5) is given in meltano.yml, where YAML reads a float (tried).
KIND_OF_TYPE = {
    "string": "string",
    "integer": "integer",
    "number": "integer",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}
# Keys of meltano.yml's block that belong to this project, not to the plugin's definition.
PROJECT_KEYS = {"config", "select", "metadata", "schema", "schema_extras"}


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def about() -> dict[str, Any]:
    out = subprocess.run(
        [TAP_EXECUTABLE, "--about", "--format=json"], capture_output=True, text=True, check=True
    )
    about: dict[str, Any] = json.loads(out.stdout)
    return about


def test_plugin_yml_is_a_hub_definition() -> None:
    plugin = load(ROOT / "plugin.yml")
    assert tuple(plugin) == HUB_KEYS
    assert plugin["name"] == "tap-wechat-share"
    assert plugin["namespace"] == "tap_wechat_share"
    assert plugin["executable"] == "tap-wechat-share"
    kinds = {kind.value for kind in SettingKind}
    names = [setting["name"] for setting in plugin["settings"]]
    assert len(names) == len(set(names)), "a setting is listed twice"
    for setting in plugin["settings"]:
        assert set(setting) <= SETTING_KEYS, setting
        assert {"name", "kind", "label", "description"} <= set(setting), setting
        assert setting["kind"] in kinds, setting
        assert setting.get("sensitive", True) is True, "sensitive is given only as true"
    for group in plugin["settings_group_validation"]:
        assert set(group) <= set(names), f"{group} names a setting that is not defined"


def test_plugin_settings_are_the_taps_own(about: dict[str, Any]) -> None:
    """Every setting of the tap, in its order, with its type, default, secrecy and description."""
    properties = {
        name: schema
        for name, schema in about["settings"]["properties"].items()
        if name not in SDK_SETTINGS
    }
    plugin = load(ROOT / "plugin.yml")
    assert [setting["name"] for setting in plugin["settings"]] == list(properties)
    for setting in plugin["settings"]:
        schema = properties[setting["name"]]
        (json_type,) = (t for t in schema["type"] if t != "null")
        kind = "date_iso8601" if schema.get("format") == "date" else KIND_OF_TYPE[json_type]
        assert setting["kind"] == kind, setting["name"]
        assert setting.get("value") == schema.get("default"), setting["name"]
        assert setting.get("sensitive", False) == schema.get("secret", False), setting["name"]
        assert setting["description"] == schema["description"], setting["name"]
    required = set(about["settings"].get("required", []))
    for group in plugin["settings_group_validation"]:
        assert required <= set(group), f"{group} leaves out a required setting"


def test_plugin_capabilities_are_the_taps(about: dict[str, Any]) -> None:
    plugin = load(ROOT / "plugin.yml")
    assert sorted(plugin["capabilities"]) == sorted(about["capabilities"])


def test_meltano_yml_block_is_plugin_yml() -> None:
    plugin = load(ROOT / "plugin.yml")
    project = load(ROOT / "meltano.yml")
    (block,) = (p for p in project["plugins"]["extractors"] if p["name"] == plugin["name"])
    definition = {key: value for key, value in block.items() if key not in PROJECT_KEYS}
    assert definition == {**plugin, "pip_url": "-e ."}, "run scripts/plugin-block"
    assert tuple(definition) == HUB_KEYS, "run scripts/plugin-block"


def test_plugin_block_script_writes_meltano_yml_from_plugin_yml(tmp_path: Path) -> None:
    """The script leaves the checked-in meltano.yml as it is, and carries a change of plugin.yml."""
    for name in ("plugin.yml", "meltano.yml", "scripts/plugin-block"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    script = [str(tmp_path / "scripts" / "plugin-block")]
    subprocess.run(script, check=True, capture_output=True)
    assert (tmp_path / "meltano.yml").read_text(encoding="utf-8") == (
        ROOT / "meltano.yml"
    ).read_text(encoding="utf-8"), "meltano.yml is not what scripts/plugin-block writes"

    text = (tmp_path / "plugin.yml").read_text(encoding="utf-8")
    (tmp_path / "plugin.yml").write_text(
        text.replace("label: Lookback days", "label: Days read again"), encoding="utf-8"
    )
    subprocess.run(script, check=True, capture_output=True)
    project = load(tmp_path / "meltano.yml")
    (block,) = project["plugins"]["extractors"][:1]
    (lookback,) = (s for s in block["settings"] if s["name"] == "lookback_days")
    assert lookback["label"] == "Days read again"
    assert block["pip_url"] == "-e ."
    assert project["environments"] == load(ROOT / "meltano.yml")["environments"]
