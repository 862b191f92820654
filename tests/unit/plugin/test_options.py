"""Option parsing: what a pyxis user writes is accepted; every mistake is one line naming option and fix."""

import pytest

from hpcctl.container import options
from hpcctl.errors import HpcctlError


def test_pyxis_image_forms():
    assert options.parse({"image": "nvcr.io#nvidia/pytorch:24.01-py3"}).image == "nvcr.io#nvidia/pytorch:24.01-py3"
    assert options.parse({"image": "nvcr.io\\#nvidia/pytorch:24.01-py3"}).image == "nvcr.io#nvidia/pytorch:24.01-py3"
    assert options.parse({"image": "docker://ubuntu:22.04"}).image == "ubuntu:22.04"
    assert options.parse({"image": "./img.sqsh"}, "/home/u").image == "/home/u/img.sqsh"
    assert options.parse({"image": "/data/img.sqsh"}).image_is_file
    assert options.parse({"image": "./img.sif"}, "/home/u").image == "/home/u/img.sif"


@pytest.mark.parametrize("raw, message", [
    ({"image": "Not An Image"}, "--container-image: 'Not An Image' is not an image reference"),
    ({"image": ""}, "--container-image is empty"),
    ({"image": "app.sif"}, "--container-image: 'app.sif' would be read as a registry image, not as the file (name "
                           "the file with a path starting with / or ./, e.g. ./app.sif)"),
    ({"image": "images/app.sqsh"}, "e.g. ./images/app.sqsh"),
    ({"image": "x", "mounts": "/a:rel"}, "destination 'rel' in '/a:rel' is not absolute"),
    ({"image": "x", "mounts": "/a:/b:bogus"}, "unknown flag 'bogus'"),
    ({"image": "x", "mounts": "/a:/b:ro+rw"}, "is both ro and rw"),
    ({"image": "x", "mounts": "a:/b"}, "source 'a' in 'a:/b' is not a path"),
    ({"image": "x", "workdir": ""}, "--container-workdir is empty"),
    ({"image": "x", "env": ""}, "--container-env is empty"),
    ({"image": "x", "env": "FOO,"}, "--container-env: 'FOO,' has an empty name"),
    ({"image": "x", "env": "A, B"}, "--container-env: ' B' is not a variable name"),
    ({"image": "x", "mounts": ""}, "--container-mounts is empty"),
    ({"image": "x", "mounts": "/tmp:"}, "--container-mounts: '/tmp:' has an empty source or destination"),
    ({"image": "x", "mounts": ":"}, "--container-mounts: ':' has an empty source or destination"),
    ({"image": "x", "mounts": "/a:/a,,/b"}, "--container-mounts: '/a:/a,,/b' has an empty entry"),
    ({"image": "x", "conflict": "writable"}, "--container-writable and --container-readonly were both given"),
    ({"image": "x", "save": "/states/"}, "--container-save: target '/states/' is a directory"),
    ({"image": "x", "unshare": "net,pid"}, "--container-unshare: unknown namespace 'pid' (use net, ipc, uts, "
                                            "separated by commas)"),
    ({"image": "x", "name": "bad name"}, "--container-name: 'bad name' is not a valid name"),
    ({"image": "x", "name": "n:sometimes"}, "--container-name: unknown mode 'sometimes'"),
    ({"image": "x", "env": "OK,1BAD"}, "--container-env: '1BAD' is not a variable name"),
    ({"image": "x", "writable": "maybe"}, "--container-writable: 'maybe' is not a yes/no value"),
    ({"mounts": "/a:/b"}, "--container-mounts given without --container-image"),
])
def test_bad_input_is_one_clear_line(raw, message):
    with pytest.raises(HpcctlError) as err:
        options.parse(raw)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_mounts_flags_and_defaults():
    mounts = options.parse({"image": "x", "mounts": "/data:/in:ro,./out:/out,tmpfs:/scratch,/same"}, "/w").mounts
    assert [(m.source, m.target, m.readonly) for m in mounts] == [
        ("/data", "/in", True), ("/w/out", "/out", False), ("tmpfs", "/scratch", False), ("/same", "/same", False)]


def test_flags_and_name():
    opts = options.parse({"image": "x", "mount_home": "0", "writable": "1", "entrypoint": "true",
                          "name": "build:no_exec", "env": "A,B", "entrypoint_log": "1"})
    assert (opts.mount_home, opts.writable, opts.entrypoint) == (False, True, True)
    assert (opts.name, opts.name_mode, opts.env, opts.entrypoint_log) == ("build", "no_exec", ("A", "B"), True)


@pytest.mark.parametrize("workdir, expected", [("/w/../x", "/x"), ("../", "/"), ("etc", "/etc")])
def test_workdir_is_resolved_from_the_container_root_as_pyxis_does(workdir, expected):
    assert options.parse({"image": "x", "workdir": workdir}).workdir == expected


def test_container_env_on_a_node_keeps_only_the_names_the_host_has():
    assert options.parse({"image": "x", "env": "A,B,C", "env_host": "C,A"}).env == ("A", "C")
    assert options.parse({"image": "x", "env": "A,B", "env_host": ""}).env == ()
    assert options.parse({"image": "x", "env": "A,B"}).env == ("A", "B")  # at submit: the names as written


def test_pyxis_readonly_variable_is_the_inverse_of_writable():
    assert options.parse({"image": "x", "readonly": "1"}).writable is False
    assert options.parse({"image": "x", "readonly": "0"}).writable is True
    assert options.parse({"image": "x", "readonly": "1", "writable": "1"}).writable is True
    with pytest.raises(HpcctlError, match="--container-readonly: 'maybe' is not a yes/no value"):
        options.parse({"image": "x", "readonly": "maybe"})


def test_dockerd_images_keep_their_scheme_and_docker_is_dropped():
    from hpcctl.container.options import parse_image

    assert parse_image("dockerd://myimage:dev", "/") == "dockerd://myimage:dev"
    assert parse_image("docker://ubuntu:22.04", "/") == "ubuntu:22.04"
    with pytest.raises(HpcctlError, match="no image name after dockerd://"):
        parse_image("dockerd://", "/")


@pytest.mark.parametrize("target", ["/proc", "/proc/1", "/sys", "/dev/pts"])
def test_the_mounts_a_task_start_reads_cannot_be_unmounted(target):
    with pytest.raises(HpcctlError, match="cannot be unmounted"):
        options.parse_mounts(f"umount:{target}", "/")
