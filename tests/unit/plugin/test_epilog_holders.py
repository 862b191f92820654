"""The job epilog stops any container holder of the job still alive on the node (none should be)."""

import subprocess
import time

from hpcctl.plugin import epilog, names
from hpcctl.site.config import SiteConfig


def test_a_lingering_holder_is_stopped_and_a_recycled_pid_is_not(tmp_path, monkeypatch):
    site = SiteConfig(path="t", cluster="t")
    monkeypatch.setattr(names, "job_dir", lambda site, job_id: str(tmp_path / "containers" / job_id))
    lingering = subprocess.Popen(["sleep", "60"])
    innocent = subprocess.Popen(["sleep", "60"])
    for name, proc, start in (("a", lingering, None), ("b", innocent, "1")):
        directory = tmp_path / "containers" / "7" / "n1" / f"2001-{name}"
        directory.mkdir(parents=True)
        with open(f"/proc/{proc.pid}/stat") as fh:
            real_start = fh.read().rsplit(")", 1)[1].split()[19]
        (directory / names.HOLDER).write_text(f"{proc.pid} {start or real_start}\n")
    assert epilog.stop_holders(site, "7") == 1
    assert lingering.wait(timeout=5) == -9
    time.sleep(0.1)
    assert innocent.poll() is None  # its recorded start time is not its own: another process
    innocent.kill()
    innocent.wait()
