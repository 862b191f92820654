"""Site selection and user defaults, each with where it came from (`hpcctl config show`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpcctl.errors import ConfigError, HpcctlError
from hpcctl.site import config as site_config
from hpcctl.site import select as user_config

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    """Empty XDG dirs, no HPCCTL_SITE, no /etc/hpcctl/site.yaml, and a slurm.conf naming cluster 'sandbox'."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg-system"))
    monkeypatch.delenv("HPCCTL_SITE", raising=False)
    monkeypatch.setattr(site_config, "SYSTEM_SITE_FILE", tmp_path / "no-site.yaml")
    slurm_conf = tmp_path / "slurm.conf"
    slurm_conf.write_text("SlurmctldHost=x\nClusterName=sandbox\n")
    monkeypatch.setenv("SLURM_CONF", str(slurm_conf))
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_cluster_name_picks_the_site_when_nothing_else_does(xdg):
    settings = user_config.effective(None)
    assert settings["site"].value == "sandbox"
    assert settings["site"].origin == f"ClusterName in {xdg / 'slurm.conf'}"
    assert settings["site_file"].value == str(REPO / "site-configs" / "sandbox.yaml")


def test_precedence_flag_env_user_file_system_file(xdg, monkeypatch):
    system = write(xdg / "xdg-system" / "hpcctl" / "config.yaml", "site: from-system\ndefaults: {qos: low}\n")
    user = write(xdg / "config" / "hpcctl" / "config.yaml", "defaults:\n  partition: debug\nsite: sandbox\n")
    settings = user_config.user_settings()
    assert settings["site"] == user_config.Setting("sandbox", f"{user}:3")
    assert settings["defaults.qos"] == user_config.Setting("low", f"{system}:2")
    assert user_config.resource_defaults(settings) == {"qos": "low", "partition": "debug"}
    assert user_config.choose_site(None, settings).origin == f"{user}:3"
    monkeypatch.setenv("HPCCTL_SITE", "other")
    assert user_config.choose_site(None, settings) == user_config.Setting("other", "environment HPCCTL_SITE")
    assert user_config.choose_site("x.yaml", settings) == user_config.Setting("x.yaml", "command line --site")


def test_no_site_anywhere(xdg, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(xdg / "missing.conf"))
    with pytest.raises(HpcctlError) as err:
        user_config.effective(None)
    assert str(err.value) == ("no site config found (pass --site NAME|FILE, set HPCCTL_SITE, or add `site:` to "
                              f"{xdg / 'config' / 'hpcctl' / 'config.yaml'})")


def test_bad_user_config_names_file_and_line(xdg):
    path = write(xdg / "config" / "hpcctl" / "config.yaml", "site: sandbox\ndefaults:\n  partiton: debug\n")
    with pytest.raises(ConfigError) as err:
        user_config.user_settings()
    assert err.value.problems == [f"{path}:3: defaults.partiton: unknown key 'partiton'; did you mean 'partition'?"]


def test_config_show_json(xdg):
    write(xdg / "config" / "hpcctl" / "config.yaml", "defaults: {time: '00:10:00'}\n")
    env = {**os.environ, "HPCCTL_SITE": "sandbox", "XDG_DATA_HOME": str(xdg / "data")}
    result = subprocess.run([sys.executable, "-m", "hpcctl", "config", "show", "--json"], capture_output=True,
                            text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["site"] == {"value": "sandbox", "origin": "environment HPCCTL_SITE"}
    assert shown["defaults.time"]["value"] == "00:10:00"
    assert shown["runs_dir"] == {"value": str(xdg / "data" / "hpcctl" / "runs"), "origin": "XDG_DATA_HOME"}
    assert shown["slurm_backend"]["value"] == "commands"
    assert shown["cluster"] == {"value": "sandbox", "origin": "cluster: in the site config"}
    assert shown["slurm_cluster"] == {"value": "sandbox", "origin": f"ClusterName in {xdg / 'slurm.conf'}"}


def test_every_command_loads_the_site_the_users_settings_choose(xdg):
    """`hpcctl image`, `run` and `site` once took --site, else $HPCCTL_SITE, else /etc/hpcctl/site.yaml, while
    `hpcctl submit` also read the user's config and Slurm's ClusterName: one policy now, in site.select."""
    mine = write(xdg / "mine.yaml", (REPO / "site-configs" / "sandbox.yaml").read_text())
    write(xdg / "config" / "hpcctl" / "config.yaml", f"site: {mine}\n")
    assert user_config.select(None) == mine == Path(user_config.effective(None)["site_file"].value)
    assert user_config.load(None).path == str(mine)
