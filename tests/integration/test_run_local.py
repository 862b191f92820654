"""`hpcctl run` on the sandbox: a job step's container without Slurm, as an admin running it with sudo sees it."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.integration.plugin_helpers import push_busybox_variant

pytestmark = pytest.mark.integration

SMI = "#!/bin/sh\necho 'NVIDIA-SMI 535.104.05   fake GPU table'\n"


@pytest.fixture(scope="module")
def busybox(sandbox):
    return f"{sandbox.registry}/hpcctl/busybox:latest"


def hpcctl_run(sandbox, *args, site=None, check=False, cwd=None, env=None):
    """`sudo hpcctl run ...` as the sandbox user would type it: SUDO_USER names them; on node n1 unless --node
    says otherwise (the sandbox's nodes each have their own image cache)."""
    site_args = ["--site", str(site)] if site else []
    args = args if "--node" in args else ("--node", "n1", *args)
    return sandbox.run([sys.executable, "-m", "hpcctl", *site_args, "run", *args],
                       env={"SUDO_USER": sandbox.user, **(env or {})}, check=check, timeout=120,
                       cwd=cwd or sandbox.workdir())


def test_a_registry_image_runs_as_the_sudo_user_in_their_directory(sandbox, busybox):
    workdir = sandbox.workdir()
    result = hpcctl_run(sandbox, busybox, "sh", "-c", "cat /etc/os-release; id; pwd", cwd=workdir, check=True)
    assert result.stdout.splitlines() == ['NAME="hpcctl busybox test image"', "ID=busybox",
                                          "uid=2001(hpcuser) gid=2001(hpcuser) groups=2001(hpcuser)", str(workdir)]
    assert result.stderr == ""


def test_the_commands_exit_status_is_hpcctls(sandbox, busybox):
    assert hpcctl_run(sandbox, busybox, "sh", "-c", "exit 7").returncode == 7
    assert hpcctl_run(sandbox, busybox, "sh", "-c", "kill -TERM $$").returncode == 128 + 15
    missing = hpcctl_run(sandbox, busybox, "no-such-command")
    assert (missing.returncode, missing.stderr) == (
        127, "hpcctl: error: cannot run no-such-command in the container: No such file or directory\n")


def test_env_workdir_and_a_readonly_root_as_the_plugin_options(sandbox, busybox):
    result = hpcctl_run(sandbox, "--env", "RUN_TEST_VAR", "--workdir", "/w", "--readonly", "--mpi", "none", busybox,
                        "sh", "-c", "echo $RUN_TEST_VAR ${SECRET_VAR-unset}; pwd; touch /x",
                        env={"RUN_TEST_VAR": "passed", "SECRET_VAR": "leaked"})
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["passed unset", "/w"]
    assert result.stderr == "touch: /x: Read-only file system\n"


def test_entrypoint_on_request_and_the_images_cmd_by_default(sandbox):
    repo = "hpcctl/run-entrypoint"
    push_busybox_variant(sandbox.registry, repo, "v1", [], entrypoint=["/bin/sh", "-c", 'echo entrypoint-ran; '
                                                                       'exec "$@"', "entrypoint"])
    image = f"{sandbox.registry}/{repo}:v1"
    assert hpcctl_run(sandbox, "--entrypoint", image, "echo", "task", check=True).stdout == "entrypoint-ran\ntask\n"
    assert hpcctl_run(sandbox, image, "echo", "task", check=True).stdout == "task\n"
    default = sandbox.run([sys.executable, "-m", "hpcctl", "run", "--node", "n1", "--user", sandbox.user, image],
                          input="echo from-the-image-cmd; id -un\n", timeout=120, cwd=sandbox.workdir())
    assert default.stdout == "from-the-image-cmd\nhpcuser\n"


SHOW_GPUS = ("echo STEP=$SLURM_STEP_GPUS CVD=$CUDA_VISIBLE_DEVICES; "
             "for d in /dev/nvidia*; do stat -c '%n %t:%T' $d; done")


@pytest.mark.parametrize("node,gpus,devices", [("n1", "1", ["/dev/nvidia0 c3:0"]),
                                               ("n2", "1", ["/dev/nvidia2 c3:2"]),
                                               ("n2", "1,", ["/dev/nvidia3 c3:3"])])
def test_exactly_the_allocated_fake_gpu_as_in_a_job(sandbox, busybox, node, gpus, devices):
    result = hpcctl_run(sandbox, "--node", node, "--gpus", gpus, "--mpi", "none", busybox, "sh", "-c", SHOW_GPUS,
                        check=True)
    step = gpus.rstrip(",") if "," in gpus else "0"
    assert result.stdout.splitlines() == [f"STEP={step} CVD=0", *devices]


@pytest.fixture
def fake_driver_site(sandbox, tmp_path):
    """The sandbox's site config with a GPU section as a node without Slurm would have it: no gres.conf, devices
    by pattern, a control device, nvidia-smi from gpu.binaries."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)):
        os.mknod(dev / name, 0o666 | 0o020000, os.makedev(195, minor))
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(SMI)
    smi.chmod(0o755)
    site = yaml.safe_load(open("/etc/hpcctl/site.yaml"))
    site["gpu"] = {"driver_libraries": [], "binaries": [str(smi)], "control_devices": [str(dev / "nvidiactl")],
                   "device_pattern": f"{dev}/nvidia{{index}}"}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def test_nvidia_smi_and_devices_from_the_site_config(sandbox, busybox, fake_driver_site):
    result = hpcctl_run(sandbox, "--gpus", "1,", busybox, "sh", "-c",
                        f"nvidia-smi; ls /dev/nvidia*; ls {fake_driver_site.parent}/dev/nvidiactl; "
                        "echo CVD=$CUDA_VISIBLE_DEVICES", site=fake_driver_site, check=True)
    assert result.stdout.splitlines() == ["NVIDIA-SMI 535.104.05   fake GPU table", "/dev/nvidia1",
                                          f"{fake_driver_site.parent}/dev/nvidiactl", "CVD=0"]


def test_plan_only_json_is_what_hpcctl_exec_runs(sandbox, busybox):
    workdir = sandbox.workdir()
    result = hpcctl_run(sandbox, "--plan-only", "--json", "--node", "n1", "--gpus", "1", "--readonly", busybox,
                        "id", cwd=workdir, check=True)
    doc = json.loads(result.stdout)
    assert (doc["uid"], doc["gid"], doc["cwd"], doc["command"]) == (2001, 2001, str(workdir), ["id"])
    plan = doc["plan"]
    assert plan["image"].startswith("/var/lib/hpcctl/nodes/n1/cache/") and plan["writable"] is False
    gpu = [m for m in plan["mounts"] if m["target"].startswith("/dev/nvidia")]
    assert [(m["source"], m["target"], m["kind"]) for m in gpu] == [("/dev/fakegpu/nvidia0", "/dev/nvidia0", "dev")]
    assert {"op": "set", "name": "CUDA_VISIBLE_DEVICES", "value": "0",
            "why": "host GPUs 0 renumbered as the container sees them"} in plan["env"]
    plan_file = workdir / "plan.json"
    plan_file.write_text(result.stdout)
    direct = subprocess.run(["/usr/local/lib/hpcctl/hpcctl-exec", str(plan_file), "--", "id", "-un"],
                            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert (direct.returncode, direct.stdout) == (0, "hpcuser\n"), direct.stderr
    plan_file.write_text(json.dumps({**doc, "plan": {**plan, "image": "/no/such.sqsh"}}))
    broken = subprocess.run(["/usr/local/lib/hpcctl/hpcctl-exec", str(plan_file), "--", "true"],
                            capture_output=True, text=True, timeout=60)
    assert (broken.returncode, broken.stderr) == (
        125, "hpcctl: error: cannot open image /no/such.sqsh: No such file or directory\n")


def test_an_unpacked_root_tree_runs_without_the_image_pipeline(sandbox, busybox, tmp_path):
    plan = json.loads(hpcctl_run(sandbox, "--plan-only", "--json", busybox, "true", check=True).stdout)["plan"]
    subprocess.run(["unsquashfs", "-q", "-n", "-d", str(tmp_path / "rootfs"), plan["image"]], check=True)
    result = hpcctl_run(sandbox, "--mpi", "none", "--gpus", "1", "--node", "n1", str(tmp_path / "rootfs"), "sh",
                        "-c", "head -1 /etc/os-release; whoami; ls /dev/nvidia*", check=True)
    assert result.stdout.splitlines() == ['NAME="hpcctl busybox test image"', "hpcuser", "/dev/nvidia0"]
    no_cmd = hpcctl_run(sandbox, str(tmp_path / "rootfs"))
    assert (no_cmd.returncode, no_cmd.stderr) == (1, f"hpcctl: error: no command to run: {tmp_path}/rootfs has no "
                                                     "CMD (give one after the image, e.g. -- sh)\n")


def test_plan_only_text_says_who_where_and_why(sandbox, busybox):
    result = hpcctl_run(sandbox, "--plan-only", "--mpi", "none", busybox, "--", "sh", "-c", "echo hi", check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == f"Container for {busybox} on node n1: user hpcuser (2001:2001), GPUs none, MPI none"
    assert lines[3] == "  command: sh -c 'echo hi'"
    assert any(line.split()[:3] == ["bind", "/home/hpcuser", "/home/hpcuser"] for line in lines)


@pytest.mark.parametrize("args, message", [
    (["127.0.0.1:5000/hpcctl/Busybox:latest", "true"], "hpcctl: error: bad image reference "
                                                        "'127.0.0.1:5000/hpcctl/Busybox:latest': "),
    (["127.0.0.1:5000/hpcctl/no-such-image:latest", "true"], "hpcctl: error: hpcctl/no-such-image:latest not found "
                                                             "in registry 127.0.0.1:5000 ("),
    (["--mounts", "/etc/slurm:/slurm", "BUSYBOX", "true"], "hpcctl: error: --mounts: /etc/slurm is under /etc, "
                                                          "which this site does not let users mount ("),
    (["--mounts", "/root:/r", "BUSYBOX", "true"], "hpcctl: error: --mounts: /root is under /root, "),
    (["--node", os.uname().nodename.split(".")[0], "--gpus", "1", "BUSYBOX", "true"], "hpcctl: error: --gpus: node '"),
])
def test_refusals_are_one_line_with_a_fix(sandbox, busybox, args, message):
    result = hpcctl_run(sandbox, *[busybox if a == "BUSYBOX" else a for a in args])
    assert result.returncode == 1
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.rstrip().endswith(")") and result.stdout == ""
