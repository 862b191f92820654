"""Host MPI injection against fake versioned libmpi in fake images: compatible, major- and minor-incompatible."""

import pytest
from fake_gpu_host import LIBDIR, facts, image, step_info

from hpcctl.container.inject.plan import plan_injections as combined
from hpcctl.container.inject.step import StepInfo
from hpcctl.container.plan import EnvOp
from hpcctl.errors import HpcctlError

IMAGE_LIB = "/usr/lib/x86_64-linux-gnu"


def step(mpi=None, job="7", **env) -> StepInfo:
    return step_info(job=job, mpi=mpi, **env)


def plan_injections(site, step, rootfs, image_env=None):
    return combined(site, step, facts(site, rootfs, step.mpi), image_env)


def mpi_mounts(injection):
    return [(m.source, m.target, m.kind, m.readonly) for m in injection.mounts]


def test_compatible_host_mpi_bound_over_the_image_file(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    rootfs = image(tmp_path, {"libmpi.so.40.30.2": "libmpi.so.40"})
    got = plan_injections(site, step(), str(rootfs))
    host = fake_host.root / LIBDIR
    assert mpi_mounts(got) == [
        (f"{host}/libmpi.so.40.30.4", f"{IMAGE_LIB}/libmpi.so.40.30.2", "bind", True),
        (f"{host}/libpmix.so.2.6.2", "/.hpcctl/lib/libpmix.so.2", "bind", True),
        (f"{fake_host.dev}/infiniband", f"{fake_host.dev}/infiniband", "bind", False),
    ]
    assert got.mounts[0].why == "MPI 'openmpi': host libmpi.so 40.30.4 over the image's 40.30.2 (abi_check major)"
    assert [(e.op, e.name, e.value) for e in got.env if not e.name.startswith("NVIDIA_")] == [
        ("set", "OMPI_MCA_btl", "self,tcp"), ("prepend", "LD_LIBRARY_PATH", "/.hpcctl/lib")]
    assert got.ldconfig
    assert f"optional MPI bind {fake_host.root}/absent not on this node; skipped" in got.notes


def test_major_incompatible_is_refused_naming_both_versions(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    rootfs = image(tmp_path, {"libmpi.so.12.1.1": "libmpi.so.12"})
    with pytest.raises(HpcctlError) as err:
        plan_injections(site, step(), str(rootfs))
    assert str(err.value) == (
        f"host MPI 'openmpi' library {fake_host.root / LIBDIR}/libmpi.so.40.30.4 (libmpi.so 40.30.4) is not "
        f"ABI-compatible with the container's {IMAGE_LIB}/libmpi.so.12.1.1 (libmpi.so 12.1.1): major version "
        "40 != 12 (abi_check: major) (use an image built against libmpi.so.40, another flavour with "
        "--container-mpi=mpich, or --container-mpi=none to use the image's own MPI)")


def test_the_matching_flavour_accepts_that_image(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    rootfs = image(tmp_path, {"libmpi.so.12.1.1": "libmpi.so.12"})
    got = plan_injections(site, step("mpich"), str(rootfs))
    assert mpi_mounts(got)[0] == (f"{fake_host.root}/mpich/libmpi.so.12.2.1", f"{IMAGE_LIB}/libmpi.so.12.1.1",
                                  "bind", True)


def test_minor_incompatible_refused_by_full_check(fake_host, tmp_path):
    rootfs = image(tmp_path, {"libmpi.so.40.31.0": "libmpi.so.40"})
    with pytest.raises(HpcctlError, match=r"libmpi.so 40.30.4\) is not ABI-compatible with the container's .*"
                                          r"libmpi.so.40.31.0 \(libmpi.so 40.31.0\): host minor version 30 is "
                                          r"older than the container's 31 \(abi_check: full\)"):
        plan_injections(fake_host.site(tmp_path, mpi_abi="full"), step(), str(rootfs))
    assert plan_injections(fake_host.site(tmp_path, mpi_abi="major"), step(), str(rootfs)).mounts


def test_strict_needs_equal_versions(fake_host, tmp_path):
    rootfs = image(tmp_path, {"libmpi.so.40.30.2": "libmpi.so.40"})
    with pytest.raises(HpcctlError, match=r"versions differ \(40.30.4 != 40.30.2\) \(abi_check: strict\)"):
        plan_injections(fake_host.site(tmp_path, mpi_abi="strict"), step(), str(rootfs))
    assert plan_injections(fake_host.site(tmp_path, mpi_abi="full"), step(), str(rootfs)).mounts


def test_image_with_two_mpis_gets_the_compatible_one(fake_host, tmp_path):
    rootfs = image(tmp_path, {"libmpi.so.12.1.1": "libmpi.so.12", "libmpi.so.40.20.0": "libmpi.so.40"})
    got = plan_injections(fake_host.site(tmp_path), step(), str(rootfs))
    assert got.mounts[0].target == f"{IMAGE_LIB}/libmpi.so.40.20.0"


def test_image_without_mpi_gets_host_library_in_libdir(fake_host, tmp_path):
    got = plan_injections(fake_host.site(tmp_path), step(), str(image(tmp_path, {})))
    assert mpi_mounts(got)[0] == (f"{fake_host.root / LIBDIR}/libmpi.so.40.30.4", "/.hpcctl/lib/libmpi.so.40",
                                  "bind", True)
    assert "the image has no libmpi.so; host libmpi.so.40.30.4 added in /.hpcctl/lib" in got.notes


def test_unknown_flavour_and_none(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    with pytest.raises(HpcctlError) as err:
        plan_injections(site, step("intelmpi"), str(image(tmp_path, {})))
    assert str(err.value) == ("unknown MPI flavour 'intelmpi' for cluster 'fake' (use --container-mpi with one of: "
                              "openmpi, mpich, none)")
    got = plan_injections(site, step("none"), str(image(tmp_path, {"libmpi.so.12.1.1": "libmpi.so.12"})))
    assert got.mounts == [] and not got.ldconfig


def test_pmix_directories_of_the_step(fake_host, tmp_path):
    site = fake_host.site(tmp_path)
    spool = fake_host.root / "spool/n1/pmix.7.0"
    appdir = fake_host.root / "tmpfs_n1/spmix_appdir_2001_7.0"
    spool.mkdir(parents=True, exist_ok=True)
    appdir.mkdir(parents=True, exist_ok=True)
    got = plan_injections(site, step(PMIX_SERVER_TMPDIR="/etc", PMIX_PTL_MODULE="tcp,usock",
                                     PMIX_SECURITY_MODE="native"), str(image(tmp_path, {})))
    assert [(m.source, m.target) for m in got.mounts if not m.readonly] == [
        (f"{fake_host.dev}/infiniband", f"{fake_host.dev}/infiniband"), (str(spool), str(spool)),
        (str(appdir), str(appdir))]
    env = [EnvOp(e.op, e.name, e.value) for e in got.env]
    assert EnvOp("set", "PMIX_MCA_ptl", "tcp,usock") in env and EnvOp("set", "PMIX_MCA_psec", "native") in env


def test_pmix_directories_missing_are_noted_not_bound(fake_host, tmp_path):
    got = plan_injections(fake_host.site(tmp_path), step(job="8"), str(image(tmp_path, {})))
    assert [m.target for m in got.mounts if not m.readonly] == [f"{fake_host.dev}/infiniband"]
    assert (f"{fake_host.root}/spool/n1/pmix.8.0 not present: bound only when the step runs under "
            "srun --mpi=pmix") in got.notes


def test_host_library_needing_a_newer_glibc_is_refused(fake_host, tmp_path):
    newer = fake_host.root / "newer-glibc/libmpi.so.40.30.4"
    site = fake_host.site(tmp_path, mpi_libraries=f"[{newer}]")
    old_image = image(tmp_path, {"libmpi.so.40.30.2": "libmpi.so.40"}, glibc="2.17")
    with pytest.raises(HpcctlError) as err:
        plan_injections(site, step(), str(old_image))
    assert str(err.value) == (
        f"host MPI 'openmpi' library {newer} needs GLIBC_2.25 but the image's C library "
        f"{IMAGE_LIB}/libc.so.6 provides up to GLIBC_2.17 (use an image with glibc 2.25 or newer, or "
        "--container-mpi=none to use the image's own MPI)")
    assert plan_injections(fake_host.site(tmp_path), step(), str(old_image)).mounts


def test_library_given_by_path_lands_under_its_soname(fake_host, tmp_path):
    newer = fake_host.root / "newer-glibc/libmpi.so.40.30.4"
    site = fake_host.site(tmp_path, mpi_libraries=f"[{newer}]")
    got = plan_injections(site, step(), str(image(tmp_path, {})))
    assert (got.mounts[0].source, got.mounts[0].target) == (str(newer), "/.hpcctl/lib/libmpi.so.40")


def test_fabric_devices_of_the_gpu_ib_example_are_device_binds(monkeypatch):
    """/dev/infiniband must stay openable on the container's private, nodev /dev: it is bound as `dev` (no nodev),
    writable, as a directory. No InfiniBand here, so the example's paths are made to exist."""
    from pathlib import Path

    from hpcctl.container.inject.injection import Injection
    from hpcctl.container.inject.mpi import flavour_binds
    from hpcctl.site.config import load_site

    site = load_site(Path(__file__).resolve().parents[4] / "site-configs/gpu-ib-example.yaml")
    monkeypatch.setattr("hpcctl.container.inject.mpi.os.path.exists", lambda path: True)
    monkeypatch.setattr("hpcctl.container.inject.mpi.os.path.isdir", lambda path: True)
    for name in ("openmpi", "mpich"):
        out = Injection()
        flavour_binds(site, site.mpi.flavours[name], step(), out)
        fabric = [(m.source, m.target, m.kind, m.readonly, m.create) for m in out.mounts if m.kind == "dev"]
        assert fabric == [("/dev/infiniband", "/dev/infiniband", "dev", False, "dir")]
        assert all(m.readonly for m in out.mounts if m.source.startswith(("/usr", "/opt", "/etc")))
