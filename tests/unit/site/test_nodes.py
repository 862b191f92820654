"""One image cache per Slurm node (cache.root with %n): which node's cache a command on this host means."""

from __future__ import annotations

import pytest

from hpcctl.errors import ConfigError, HpcctlError
from hpcctl.site.config import load_site
from hpcctl.site.nodes import cache_node, local_nodes

TWO_NODES = "NodeName=n[1-2] NodeHostname=box NodeAddr=127.0.0.1 Port=[17001-17002] CPUs=4\n"


def site_with(tmp_path, root: str, slurm_conf: str):
    (tmp_path / "slurm.conf").write_text(slurm_conf)
    path = tmp_path / "site.yaml"
    path.write_text(f"version: 1\ncluster: c\nslurm: {{config_dir: {tmp_path}}}\ncache: {{root: {root}}}\n")
    return load_site(path)


def test_each_node_has_its_own_cache_directory(tmp_path):
    site = site_with(tmp_path, "/var/lib/hpcctl/nodes/%n/cache", TWO_NODES)
    assert site.cache.per_node and site.cache.root_for("n2") == "/var/lib/hpcctl/nodes/n2/cache"
    assert local_nodes(site, "box.example.org") == ["n1", "n2"]


def test_a_host_with_one_node_needs_no_node_name(tmp_path, monkeypatch):
    site = site_with(tmp_path, "/cache/%n", "NodeName=gpu07 CPUs=64\n")
    monkeypatch.setattr("socket.gethostname", lambda: "gpu07.cluster")
    assert cache_node(site, None) == "gpu07"


def test_several_nodes_on_the_host_need_one_named_among_them(tmp_path, monkeypatch):
    site = site_with(tmp_path, "/cache/%n", TWO_NODES)
    monkeypatch.setattr("socket.gethostname", lambda: "box")
    assert cache_node(site, "n2") == "n2"
    with pytest.raises(HpcctlError) as missing:
        cache_node(site, None)
    assert str(missing.value) == ("this host runs 2 Slurm nodes, each with its own image cache (/cache/%n): say "
                                  "which (add --node NAME, one of: n1, n2)")
    with pytest.raises(HpcctlError) as foreign:
        cache_node(site, "../n1")
    assert str(foreign.value) == "--node ../n1: not a Slurm node of this host (name one of: n1, n2)"


def test_one_cache_per_host_ignores_the_node(tmp_path):
    site = site_with(tmp_path, "/var/lib/hpcctl/cache", TWO_NODES)
    assert not site.cache.per_node and cache_node(site, None) is None
    assert site.cache.root_for("n1") == "/var/lib/hpcctl/cache"


def test_only_percent_n_may_be_in_the_cache_root(tmp_path):
    with pytest.raises(ConfigError) as err:
        site_with(tmp_path, "/cache/%h/%n", TWO_NODES)
    assert err.value.problems == [f"{tmp_path}/site.yaml:4: cache.root: only %n (the node name) may follow a % in "
                                  "/cache/%h/%n (write e.g. /var/lib/hpcctl/nodes/%n/cache)"]
