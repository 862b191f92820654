"""A failure while the node prepares the container is one line on the helper's stderr (which the shim shows the
user) and exit 1; a full disk cannot be made on demand here, so the cache's NoSpace is raised by a mock."""

import io
import json
from pathlib import Path

from hpcctl.image.errors import NoSpace
from hpcctl.plugin import protocol, step

SITE = str(Path(__file__).resolve().parents[3] / "site-configs" / "sandbox.yaml")
REQUEST = {"options": {"image": "127.0.0.1:5000/hpcctl/busybox:latest"},
           "job": {"uid": 2001, "gid": 2001, "groups": [], "jobid": 7, "stepid": 0, "nodeid": 0, "batch": False,
                   "argv": ["true"], "env": {"SLURMD_NODENAME": "n1"}, "host": "n1", "cwd": "/tmp"}}


def test_no_space_in_the_image_cache_is_one_line(mocker, capsys):
    mocker.patch("hpcctl.image.api.ensure", side_effect=NoSpace(
        "no space left in the image cache at /var/lib/hpcctl/cache while pulling 127.0.0.1:5000/hpcctl/busybox",
        "free space there or lower cache.high_watermark"))
    mocker.patch("sys.stdin", io.StringIO(json.dumps(REQUEST)))
    assert protocol.serve(step.handle, ["--site", SITE]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("no space left in the image cache at /var/lib/hpcctl/cache while pulling "
                   "127.0.0.1:5000/hpcctl/busybox (free space there or lower cache.high_watermark)\n")


def test_an_unexpected_failure_is_one_line_too(mocker, capsys):
    mocker.patch("hpcctl.image.api.ensure", side_effect=OSError(5, "Input/output error"))
    mocker.patch("sys.stdin", io.StringIO(json.dumps(REQUEST)))
    assert protocol.serve(step.handle, ["--site", SITE]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hpcctl internal error: OSError: [Errno 5] Input/output error")
