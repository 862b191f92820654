"""GPU injection on a fake driver tree: exactly the allocated devices, the driver's libraries, renumbered GPUs."""

import json

import pytest
from fake_gpu_host import DRIVER, LIBDIR, OLD_DRIVER, facts, image, step_info

from hpcctl.container.inject.gpu import NVIDIA_IMAGE_ENV, remap
from hpcctl.container.inject.plan import plan_injections as combined
from hpcctl.container.inject.step import StepInfo
from hpcctl.container.plan import EnvOp
from hpcctl.errors import HpcctlError
from hpcctl.plugin.gpus import requested


def step(gpus: str, node: str = "n1") -> StepInfo:
    return step_info(node=node, gpus=tuple(int(g) for g in gpus.split(",") if g), mpi="none")


def plan_injections(site, step, rootfs, image_env=None):
    return combined(site, step, facts(site, rootfs, step.mpi), image_env)


def triples(injection):
    return [(m.source, m.target, m.kind) for m in injection.mounts]


def test_allocated_gpus_only_with_driver_stack(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    got = plan_injections(site, step("3,1"), str(image(tmp_path, {})))
    dev, lib = fake_host.dev, fake_host.root / LIBDIR
    assert triples(got) == [
        (f"{dev}/nvidia3", "/dev/nvidia3", "dev"),
        (f"{dev}/nvidia1", "/dev/nvidia1", "dev"),
        (f"{dev}/nvidiactl", f"{dev}/nvidiactl", "dev"),
        (f"{dev}/nvidia-uvm", f"{dev}/nvidia-uvm", "dev"),
        (f"{lib}/libcuda.so.{DRIVER}", "/.hpcctl/lib/libcuda.so.1", "bind"),
        (f"{lib}/libcuda.so.{DRIVER}", "/.hpcctl/lib/libcuda.so", "bind"),
        (f"{lib}/libnvidia-ml.so.{DRIVER}", "/.hpcctl/lib/libnvidia-ml.so.1", "bind"),
        (f"{lib}/libnvidia-ml.so.{DRIVER}", "/.hpcctl/lib/libnvidia-ml.so", "bind"),
        (f"{fake_host.root}/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi", "bind"),
    ]
    assert all(m.readonly for m in got.mounts if m.kind == "bind")
    assert not any(m.readonly for m in got.mounts if m.kind == "dev")
    assert [(e.op, e.name, e.value) for e in got.env] == [
        ("set", "CUDA_VISIBLE_DEVICES", "1,0"), ("set", "GPU_DEVICE_ORDINAL", "1,0"),
        ("prepend", "LD_LIBRARY_PATH", "/.hpcctl/lib")]
    assert got.ldconfig
    assert got.notes == [
        f"control device {dev}/nvidia-modeset not on this node; skipped",
        f"{fake_host.root}/old/libnvidia-ptxjitcompiler.so.{OLD_DRIVER} is from driver {OLD_DRIVER}, "
        f"not the running {DRIVER}; skipped",
        "driver library libnvidia-absent.so not in the host's ldconfig -p; skipped",
    ]


def test_gres_conf_maps_node_index_to_its_device(fake_host, tmp_path):
    gres = tmp_path / "gres.conf"
    gres.write_text("AutoDetect=off\n"
                    f"NodeName=n1 Name=gpu Type=fake File={fake_host.dev}/nvidia[0-1]\n"
                    f"NodeName=n2 Name=gpu Type=fake File={fake_host.dev}/nvidia[2-3]\n")
    site = fake_host.site(tmp_path, f"  gres_conf: {gres}\n")
    got = plan_injections(site, step("1", node="n2"), str(image(tmp_path, {})))
    assert [(m.source, m.target) for m in got.mounts if m.target.startswith("/dev/nvidia")] == [
        (f"{fake_host.dev}/nvidia3", "/dev/nvidia3")]
    assert EnvOp("set", "CUDA_VISIBLE_DEVICES", "0") in [EnvOp(e.op, e.name, e.value) for e in got.env]
    with pytest.raises(HpcctlError, match=r"GPU index 2 of node n2 is not in .*gres.conf \(2 GPU file"):
        plan_injections(site, step("2", node="n2"), str(image(tmp_path, {})))


def test_no_gpu_drops_image_nvidia_settings(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    image_env = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_REQUIRE_CUDA": "cuda>=12.2", "PATH": "/bin"}
    got = plan_injections(site, step(""), str(image(tmp_path, {})), image_env=image_env)
    assert got.mounts == []
    assert [(e.op, e.name) for e in got.env] == [("unset", "NVIDIA_REQUIRE_CUDA"), ("unset", "NVIDIA_VISIBLE_DEVICES")]
    unknown = plan_injections(site, step(""), str(image(tmp_path, {})))
    assert [(e.op, e.name) for e in unknown.env] == [("unset", n) for n in NVIDIA_IMAGE_ENV]


def test_missing_gpu_device_is_a_clear_error(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    with pytest.raises(HpcctlError) as err:
        plan_injections(site, step("7"), str(image(tmp_path, {})))
    assert str(err.value) == (f"GPU 7 of node n1: device {fake_host.dev}/nvidia7 does not exist (check "
                              f"gpu.device_pattern / gpu.gres_conf in {site.path} (hpcctl site check))")


def test_cdi_spec_replaces_the_list(fake_host, tmp_path):
    spec = tmp_path / "nvidia.json"
    spec.write_text(json.dumps({
        "cdiVersion": "0.5.0", "kind": "nvidia.com/gpu",
        "devices": [{"name": str(i), "containerEdits": {"deviceNodes": [{"path": f"/dev/nvidia{i}",
                                                                         "hostPath": f"{fake_host.dev}/nvidia{i}"}]}}
                    for i in range(4)],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [{"path": "/dev/nvidiactl", "hostPath": f"{fake_host.dev}/nvidiactl"}],
            "mounts": [{"hostPath": "/usr/lib/libcuda.so.1", "containerPath": "/usr/lib/libcuda.so.1",
                        "options": ["ro", "nosuid", "nodev", "bind"]}],
            "hooks": [{"hookName": "createContainer", "path": "/usr/bin/nvidia-ctk",
                       "args": ["nvidia-ctk", "hook", "update-ldcache", "--folder", "/usr/lib"]},
                      {"hookName": "createContainer", "path": "/usr/bin/nvidia-ctk",
                       "args": ["nvidia-ctk", "hook", "create-symlinks"]}]}}))
    site = fake_host.site(tmp_path, f"  cdi_spec: {spec}\n")
    got = plan_injections(site, step("2"), str(image(tmp_path, {})))
    assert triples(got) == [(f"{fake_host.dev}/nvidiactl", "/dev/nvidiactl", "dev"),
                            ("/usr/lib/libcuda.so.1", "/usr/lib/libcuda.so.1", "bind"),
                            (f"{fake_host.dev}/nvidia2", "/dev/nvidia2", "dev")]
    assert [(e.op, e.name, e.value) for e in got.env] == [
        ("set", "NVIDIA_VISIBLE_DEVICES", "void"), ("set", "CUDA_VISIBLE_DEVICES", "0"),
        ("set", "GPU_DEVICE_ORDINAL", "0")]
    assert got.ldconfig
    assert got.notes == ["CDI hook not run: nvidia-ctk hook create-symlinks"]
    with pytest.raises(HpcctlError, match=r"CDI spec .* has no device 9 \(it has: 0, 1, 2, 3\)"):
        plan_injections(site, step("9"), str(image(tmp_path, {})))


def test_cdi_spec_absent_on_node_falls_back_to_list(fake_host, tmp_path):
    site = fake_host.site(tmp_path, f"  cdi_spec: {tmp_path}/absent.yaml\n")
    got = plan_injections(site, step("0"), str(image(tmp_path, {})))
    assert ("/dev/nvidia0", "dev") in [(m.target, m.kind) for m in got.mounts]
    assert got.notes[0] == f"CDI spec {tmp_path}/absent.yaml not on this node; using gpu.driver_libraries"


@pytest.mark.parametrize("host,container", [((3, 1, 5), "1,0,2"), ((0,), "0"), ((2, 3), "0,1"), ((1, 0), "1,0")])
def test_remap_like_sarus(host, container):
    assert remap(host) == container


@pytest.mark.parametrize("env,gpus", [
    ({"SLURM_STEP_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1"}, (2, 3)),
    ({"SLURM_JOB_GPUS": "1", "CUDA_VISIBLE_DEVICES": "0"}, (1,)),
    ({"CUDA_VISIBLE_DEVICES": "3,1"}, (3, 1)),
    ({"CUDA_VISIBLE_DEVICES": "GPU-8f3a1c2e-aaaa"}, ()),
    ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, ()),
    ({}, ()),
])
def test_step_gpus_requested_by_slurm_env(env, gpus):
    assert requested(env) == gpus
