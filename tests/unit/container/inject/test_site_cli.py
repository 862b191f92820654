"""`hpcctl site explain` and `hpcctl site check` on a fake GPU + MPI node: what an admin reads."""

import json
import re
import subprocess
import sys

from fake_gpu_host import DRIVER, LIBDIR, image


def hpcctl(*args):
    return subprocess.run([sys.executable, "-m", "hpcctl", *args], capture_output=True, text=True)


def test_explain_json_lists_what_where_why(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    rootfs = image(tmp_path, {"libmpi.so.40.30.2": "libmpi.so.40"})
    result = hpcctl("--site", site.path, "site", "explain", "--image", str(rootfs), "--gpus", "2", "--node", "n1",
                    "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    plan = doc["plan"]
    assert (doc["gpus"], doc["mpi"], plan["ldconfig"]) == ([0, 1], "openmpi", True)
    assert (plan["mounts"][0]["target"], plan["mounts"][0]["kind"]) == ("/dev", "tmpfs")
    injected = [m for m in plan["mounts"] if m["source"].startswith(str(fake_host.root))]
    assert {("/dev/nvidia0", "dev"), ("/dev/nvidia1", "dev"), (f"{fake_host.dev}/nvidiactl", "dev"),
            (f"{fake_host.dev}/nvidia-uvm", "dev")} <= {(m["target"], m["kind"]) for m in injected}
    mpi = next(m for m in plan["mounts"] if m["target"].endswith("libmpi.so.40.30.2"))
    assert mpi["source"] == f"{fake_host.root / LIBDIR}/libmpi.so.40.30.4"
    assert mpi["why"] == "MPI 'openmpi': host libmpi.so 40.30.4 over the image's 40.30.2 (abi_check major)"
    assert {"op": "set", "name": "CUDA_VISIBLE_DEVICES", "value": "0,1",
            "why": "host GPUs 0,1 renumbered as the container sees them"} in plan["env"]


def test_explain_table_and_refusal(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    rootfs = image(tmp_path, {"libmpi.so.12.1.1": "libmpi.so.12"})
    result = hpcctl("--site", site.path, "site", "explain", "--image", str(rootfs), "--mpi", "mpich")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith("(cluster 'fake'): 0 GPU(s), MPI mpich")
    assert re.search(r"^bind +\S+/mpich/libmpi.so.12.2.1 +/\S+/libmpi.so.12.1.1 +ro +MPI 'mpich'", result.stdout,
                     re.MULTILINE)
    refused = hpcctl("--site", site.path, "site", "explain", "--image", str(rootfs))
    assert refused.returncode == 1
    assert refused.stderr.startswith("hpcctl: error: host MPI 'openmpi' library ")
    assert "major version 40 != 12" in refused.stderr and len(refused.stderr.splitlines()) == 1
    bad = hpcctl("--site", site.path, "site", "explain", "--image", str(tmp_path / "nothing"))
    assert bad.stderr.strip() == f"hpcctl: error: image file {tmp_path}/nothing does not exist (check the path)"


def test_check_reports_every_library_device_and_dir(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    result = hpcctl("site", "check", "--node", "n3", "--json", site.path)
    report = json.loads(result.stdout)
    seen = {(f["section"], f["path"]): (f["found"], f["detail"]) for f in report["findings"]}
    assert seen[("gpu", f"{fake_host.dev}/nvidia3")] == (True, "")
    assert seen[("gpu", f"{fake_host.dev}/nvidia-modeset")] == (False, "")
    assert seen[("gpu", "libcuda.so")][0] and seen[("gpu", "libcuda.so")][1].endswith(f"libcuda.so.{DRIVER}")
    assert seen[("gpu", "libnvidia-absent.so")] == (False, "not in ldconfig -p")
    assert seen[("gpu", "/proc/driver/nvidia/version or nvidia-smi")] == (True, DRIVER)
    assert seen[("mpi.openmpi", "libmpi.so.40")][1].endswith("libmpi.so.40.30.4")
    assert seen[("mpi.openmpi", f"{fake_host.dev}/infiniband")] == (True, "")
    assert seen[("slurm", f"{fake_host.root}/spool/n3")][0] is False
    assert ("plugin", "/run/hpcctl") in seen and ("cache", "/var/lib/hpcctl/cache") in seen
    missing = [f["path"] for f in report["findings"] if f["required"] and not f["found"]]
    assert report["missing"] == len(missing) and result.returncode == 1


def test_explain_reads_a_squashfs_image(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    rootfs = image(tmp_path, {"libmpi.so.12.1.1": "libmpi.so.12"})
    sqsh = tmp_path / "img.sqsh"
    subprocess.run(["mksquashfs", str(rootfs), str(sqsh), "-quiet", "-no-progress", "-all-root"], check=True)
    result = hpcctl("--site", site.path, "site", "explain", "--image", str(sqsh), "--mpi", "mpich", "--json")
    assert result.returncode == 0, result.stderr
    mpi = next(m for m in json.loads(result.stdout)["plan"]["mounts"] if "libmpi" in m["source"])
    assert (mpi["source"], mpi["target"]) == (f"{fake_host.root}/mpich/libmpi.so.12.2.1",
                                              "/usr/lib/x86_64-linux-gnu/libmpi.so.12.1.1")
    with open("/proc/mounts") as fh:
        mounts = fh.read()
    assert "hpcctl-rootfs-" not in mounts


def test_check_reads_the_cdi_spec(fake_host, tmp_path):
    spec = tmp_path / "nvidia.yaml"
    spec.write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: '0'\n- name: all\n")
    site = fake_host.site(tmp_path, f"  cdi_spec: {spec}\n")
    report = json.loads(hpcctl("site", "check", "--json", site.path).stdout)
    assert [(f["found"], f["detail"]) for f in report["findings"] if f["what"] == "CDI spec"] == [
        (True, "nvidia.com/gpu devices: 0, all")]
    spec.write_text("just: text\n")
    report = json.loads(hpcctl("site", "check", "--json", site.path).stdout)
    assert [(f["found"], f["required"], f["detail"]) for f in report["findings"] if f["what"] == "CDI spec"] == [
        (False, True, f"{spec} is not a CDI spec (no kind or devices) (regenerate it (nvidia-ctk cdi generate) or "
                      "remove gpu.cdi_spec from the site config)")]
