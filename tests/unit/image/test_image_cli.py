"""`hpcctl image` as a user sees it: a progress bar on a terminal, quiet JSON otherwise, local files, .sif."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import pytest


@pytest.fixture
def site_file(tmp_path, fake_registry):
    path = tmp_path / "site.yaml"
    path.write_text(f"version: 1\ncluster: test\ncache: {{root: {tmp_path / 'cache'}}}\n"
                    f"registries: {{insecure: ['{fake_registry.host}'], docker_config: false, retries: 1}}\n")
    return path


def hpcctl(site_file, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hpcctl", "--site", str(site_file), "image", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def on_a_terminal(site_file, *args) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; returns (exit status, everything it wrote)."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hpcctl", "--site", str(site_file), "image", *args],
                            stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_pull_on_a_terminal_draws_a_progress_bar_with_bytes_and_rate(fake_registry, site_file):
    ref = f"{fake_registry.host}/test/small:v1"
    rc, out = on_a_terminal(site_file, "pull", ref)
    assert rc == 0, out
    bar = re.search(rf"pulling {re.escape(ref)} \(2 layers\) \[#{{30}}\] (\d+) B / \1 B  [\d.]+ (B|KiB|MiB)/s", out)
    assert bar, out
    last_line = out.rstrip().splitlines()[-1].split("\x1b[K")[-1]  # the bar is erased before the result
    assert last_line.startswith(f"{ref}: {site_file.parent}/cache/images/")


def test_pull_without_a_terminal_is_quiet_and_json_is_machine_readable(fake_registry, site_file):
    result = hpcctl(site_file, "pull", "--json", f"{fake_registry.host}/test/small:v1")
    assert result.returncode == 0 and result.stderr == ""
    pulled = json.loads(result.stdout)
    assert pulled["digest"] == fake_registry.small_digest and pulled["config"]["Cmd"] == ["/bin/sh"]
    listed = json.loads(hpcctl(site_file, "ls", "--json").stdout)
    assert [(row["reference"], row["digest"], row["size"]) for row in listed] == [
        (pulled["reference"], pulled["digest"], pulled["size"])]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed[0]["last_used"])
    gc = json.loads(hpcctl(site_file, "gc", "--json", "--target", "0").stdout)
    assert [item["digest"] for item in gc[0]["removed"]] == [pulled["digest"]]


def test_a_relative_squashfs_path_is_used_in_place(fake_registry, site_file, tmp_path):
    pulled = json.loads(hpcctl(site_file, "pull", "--json", f"{fake_registry.host}/test/small:v1").stdout)
    (tmp_path / "work").mkdir()
    (tmp_path / "work/img.sqsh").write_bytes(open(pulled["path"], "rb").read())
    local = json.loads(hpcctl(site_file, "pull", "--json", "./img.sqsh", cwd=tmp_path / "work").stdout)
    assert local["path"] == str(tmp_path / "work/img.sqsh")


def test_a_sif_is_read_without_apptainer_and_used_in_place(site_file, tmp_path):
    """Neither Apptainer nor SingularityCE is packaged for Debian 12: hpcctl reads the SIF header itself."""
    from hpcctl.sandbox import sif_writer

    (tmp_path / "tree/bin").mkdir(parents=True)
    (tmp_path / "tree/bin/hello").write_text("hi\n")
    sif_writer.singularity_sif(tmp_path / "app.sif", tmp_path / "tree")
    pulled = json.loads(hpcctl(site_file, "pull", "--json", "./app.sif", cwd=tmp_path).stdout)
    assert pulled["path"] == str(tmp_path / "app.sif") and pulled["digest"] == ""
    (tmp_path / "cut.sif").write_bytes(b"SIF_MAGIC")
    result = hpcctl(site_file, "pull", "./cut.sif", cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"hpcctl: error: {tmp_path}/cut.sif: the .sif is truncated: its global header ends at "
                             "byte 128, the file has 9 (copy the file again in full)\n")
