"""Jobs checked against the site config before submission: partition, limits, GPU type, mounts, MPI flavour."""

from pathlib import Path

import pytest

from hpcctl.errors import ConfigError
from hpcctl.jobspec.load import load_job_file, parse_job_file
from hpcctl.jobspec.site_check import check_job_file, format_duration
from hpcctl.site.config import load_site

REPO = Path(__file__).resolve().parents[3]
SANDBOX = load_site(REPO / "site-configs" / "sandbox.yaml")
GPU_IB = load_site(REPO / "site-configs" / "gpu-ib-example.yaml")


def site_problems(text: str, site=SANDBOX) -> list[str]:
    with pytest.raises(ConfigError) as err:
        check_job_file(parse_job_file(text, "job.yaml"), site)
    return err.value.problems


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_fits_the_sandbox(example):
    check_job_file(load_job_file(str(example)), SANDBOX)


def test_limits_of_the_partition():
    assert site_problems("name: x\ncommand: echo\n"
                         "resources: {time: '02:00:00', nodes: 3, gpus: 4, gpu_type: a100}\n") == [
        "job.yaml:3: resources.time: time 02:00:00 exceeds partition 'debug' limit 01:00:00 (ask for at most 01:00:00)",
        "job.yaml:3: resources.nodes: 3 nodes exceed partition 'debug' limit of 2 (ask for at most 2)",
        "job.yaml:3: resources.gpus: 4 GPUs per node exceed partition 'debug' limit of 2 (ask for at most 2)",
        "job.yaml:3: resources.gpu_type: GPU type 'a100' is not in partition 'debug' (use one of: fake)",
    ]


def test_unknown_partition_mount_policy_and_mpi_flavour():
    text = ("name: x\ncommand: echo\nresources:\n  partition: gpu\nimage: busybox\ncontainer:\n"
            "  mounts: [/etc/passwd:/p, /home/u/data:/data:ro, /root]\nmpi: {flavour: mpich}\n")
    assert site_problems(text) == [
        "job.yaml:4: resources.partition: partition 'gpu' does not exist on cluster 'sandbox' (use one of: debug, "
        "scale)",
        "job.yaml:7: container.mounts[0]: mounting /etc/passwd is not allowed: /etc is reserved by the site "
        "(mount a directory outside /etc, /var/spool/slurmd, /var/lib/hpcctl, /run/munge, /proc, /sys, /root)",
        "job.yaml:7: container.mounts[2]: mounting /root is not allowed: /root is reserved by the site "
        "(mount a directory outside /etc, /var/spool/slurmd, /var/lib/hpcctl, /run/munge, /proc, /sys, /root)",
        "job.yaml:8: mpi.flavour: MPI flavour 'mpich' is not offered on cluster 'sandbox' (use one of: openmpi, none)",
    ]


def test_gpus_on_a_partition_without_gpus_and_the_default_partition():
    assert site_problems("name: x\ncommand: echo\nresources: {partition: cpu, gpus: 1}\n", GPU_IB) == [
        "job.yaml:3: resources.gpus: 1 GPUs per node exceed partition 'cpu' limit of 0 (pick a partition with GPUs)"]
    assert site_problems("name: x\ncommand: echo\nresources: {gpus: 8, gpu_type: h100}\n", GPU_IB) == [
        "job.yaml:3: resources.gpus: 8 GPUs per node exceed partition 'gpu' limit of 4 (ask for at most 4)",
        "job.yaml:3: resources.gpu_type: GPU type 'h100' is not in partition 'gpu' (use one of: a100)"]
    check_job_file(parse_job_file("name: x\ncommand: e\nresources: {partition: gpu-h100, gpus: 8, gpu_type: h100, "
                                  "time: '1-00:00:00'}\n", "job.yaml"), GPU_IB)


def test_each_job_of_a_pipeline_is_checked_with_its_own_lines():
    assert site_problems("- {name: a, command: x}\n- name: b\n  command: x\n  resources: {nodes: 5}\n") == [
        "job.yaml:4: [1].resources.nodes: 5 nodes exceed partition 'debug' limit of 2 (ask for at most 2)"]


def test_site_without_user_mounts(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("version: 1\ncluster: strict\nuser_mounts: {allow: false}\n")
    assert site_problems("name: x\nimage: i\ncommand: x\ncontainer: {mounts: [/data]}\n", load_site(config)) == [
        "job.yaml:4: container.mounts[0]: cluster 'strict' does not allow user mounts (remove container.mounts)"]


def test_format_duration():
    assert format_duration(3600) == "01:00:00"
    assert format_duration(2 * 86400 + 61) == "2-00:01:01"


def test_spec_and_site_problems_are_reported_together(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\nscript: echo\ncommand: echo\nresources: {nodes: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_job_file(str(spec), site=SANDBOX)
    assert err.value.problems == [
        f"{spec}:1: name: needs exactly one of 'command' or 'script' "
        "(write `command:` for one line or an argv list, `script:` for several lines)",
        f"{spec}:4: resources.nodes: 3 nodes exceed partition 'debug' limit of 2 (ask for at most 2)"]
    assert err.value.fix == f"site config: {SANDBOX.path}"


def test_schema_problems_do_not_hide_the_site_problems(tmp_path):
    """A misspelt key used to stop the check: its fix, then a second submission, only to learn about the limits.
    A close misspelling is read as the key it was meant to be; a distant guess ('cpus' for 'gpus') is left out."""
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\ncomand: echo\nresources: {nodes: 3, time: '2:00:00', cpus: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_job_file(str(spec), site=SANDBOX)
    assert [p.split(": ", 1)[1] for p in err.value.problems] == [
        "comand: unknown key 'comand'; did you mean 'command'?",
        "resources.cpus: unknown key 'cpus'; did you mean 'gpus'?",
        "resources.time: time 2:00:00 exceeds partition 'debug' limit 01:00:00 (ask for at most 01:00:00)",
        "resources.nodes: 3 nodes exceed partition 'debug' limit of 2 (ask for at most 2)"]


def test_a_missing_required_key_reports_the_schema_problems_alone(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("command: echo\nresources: {nodes: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_job_file(str(spec), site=SANDBOX)
    assert err.value.problems == [f"{spec}:1: missing required key 'name'"]
