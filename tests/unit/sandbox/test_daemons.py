"""Daemon start/stop by pid file, and what a user sees when a daemon does not come up."""

import pytest

from hpcctl.sandbox.daemons import Daemon, StepFailed, start, stop


def test_a_daemon_that_dies_names_the_step_and_shows_its_log(tmp_path):
    daemon = Daemon("flaky", ("/bin/sh", "-c", "echo 'fatal: port in use' >&2; exit 3"), tmp_path / "flaky.pid",
                    tmp_path / "flaky.log", foreground=True)
    with pytest.raises(StepFailed) as err:
        start(daemon, ready=lambda: False, timeout=5)
    text = str(err.value)
    assert text.startswith("sandbox step 'flaky' failed: exited with status 3")
    assert f"--- last lines of {tmp_path / 'flaky.log'} ---\nfatal: port in use" in text


def test_start_is_idempotent_and_stop_ends_it(tmp_path):
    daemon = Daemon("sleeper", ("/bin/sleep", "60"), tmp_path / "s.pid", tmp_path / "s.log", foreground=True)
    pid = start(daemon, ready=lambda: True, timeout=5)
    assert start(daemon, ready=lambda: True, timeout=5) == pid
    assert stop(daemon)
    assert daemon.pid() is None
    assert not stop(daemon)


def test_a_stale_pid_file_does_not_count_as_running(tmp_path):
    pidfile = tmp_path / "x.pid"
    pidfile.write_text("1\n")  # PID 1 is not /bin/sleep
    assert Daemon("x", ("/bin/sleep",), pidfile, tmp_path / "x.log").pid() is None
