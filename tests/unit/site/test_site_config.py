"""Site configs: what an admin sees for valid and broken files."""

import subprocess
import sys
from pathlib import Path

import pytest

from hpcctl.errors import ConfigError
from hpcctl.site.config import load_site, parse_duration, parse_size

REPO = Path(__file__).resolve().parents[3]


def hpcctl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hpcctl", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("path", sorted((REPO / "site-configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_site_config_is_valid(path):
    site = load_site(path)
    assert site.cluster


def test_sandbox_config_values():
    site = load_site(REPO / "site-configs" / "sandbox.yaml")
    assert site.cache.high_watermark == 20 << 30
    assert site.partitions["debug"].max_time == 3600
    assert site.default_partition().name == "debug"
    assert site.slurm.spool_for("n2") == "/var/spool/slurmd/n2"
    assert site.mpi.flavours[site.mpi.default].libraries[0] == "libmpi.so.40"


def test_all_problems_reported_at_once_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncluster: x\ncache:\n  root: relative/path\n  compresion: zstd\n"
                   "partitions:\n  p:\n    max_nodes: 0\n")
    with pytest.raises(ConfigError) as err:
        load_site(bad)
    problems = err.value.problems
    assert f"{bad}:4: cache.root: 'relative/path' is not an absolute path (write an absolute path starting with /)" in problems[0]
    assert "write an absolute path starting with /" in problems[0]
    assert problems[1] == f"{bad}:5: cache.compresion: unknown key 'compresion'; did you mean 'compression'?"
    assert problems[2] == f"{bad}:8: partitions.p.max_nodes: 0 is below the minimum 1"


def test_cross_field_checks(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncluster: x\ncache:\n  high_watermark: 1G\n  low_watermark: 2G\n"
                   "mpi:\n  default: mpich\n")
    with pytest.raises(ConfigError) as err:
        load_site(bad)
    text = "\n".join(err.value.problems)
    assert f"{bad}:5: cache.low_watermark: larger than high_watermark" in text
    assert f"{bad}:7: mpi.default: 'mpich' is not a flavour" in text


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ncluster: [x\n")
    result = hpcctl("site", "check", "--syntax-only", str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith(f"hpcctl: error: {bad}:3: invalid YAML")


def test_site_check_cli_reports_invalid_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\ncluster: x\n")
    result = hpcctl("site", "check", "--syntax-only", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"hpcctl: error: {bad}:1: version: 2 is not one of 1 (this hpcctl reads site "
                                     "config version 1) (see `hpcctl site schema` for the allowed keys)")


def test_site_schema_is_json():
    import json
    result = hpcctl("site", "schema")
    assert json.loads(result.stdout)["title"] == "hpcctl site config"


@pytest.mark.parametrize("text,expected", [("20GiB", 20 << 30), ("500M", 500 << 20), ("1.5G", 3 << 29),
                                           (4096, 4096), ("10 KB", 10240)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [("30", 1800), ("10:30", 630), ("01:00:00", 3600),
                                           ("2-00:00:00", 172800), ("1-12", 129600), ("UNLIMITED", None)])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected
