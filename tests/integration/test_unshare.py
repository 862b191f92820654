"""--container-unshare=net,ipc,uts as pyxis has it (its tests/unshare*.bats): the step's tasks share namespaces of
their own, the network one with only a loopback; a named container keeps them for the steps that join it."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.plugin_helpers import NO_MPI, srun

pytestmark = pytest.mark.integration

DEBIAN = "127.0.0.1:5000/hpcctl/debian:bookworm"
SHOW = "echo net=$(readlink /proc/self/ns/net) ipc=$(readlink /proc/self/ns/ipc) uts=$(readlink /proc/self/ns/uts)"


@pytest.fixture(scope="module")
def work(sandbox):
    return sandbox.workdir()


def host_namespaces() -> dict[str, str]:
    return {ns: subprocess.run(["readlink", f"/proc/self/ns/{ns}"], capture_output=True, text=True).stdout.strip()
            for ns in ("net", "ipc", "uts")}


def namespaces(output: str) -> list[dict[str, str]]:
    return [dict(field.split("=", 1) for field in line.split()) for line in output.splitlines()
            if line.startswith("net=")]


@pytest.mark.parametrize("value", ["foo", "net,foo"])
def test_an_unknown_namespace_is_refused(sandbox, work, value):
    r = srun(sandbox, f"--container-unshare={value}", f"--container-image={DEBIAN}", NO_MPI, "true", cwd=work)
    assert r.returncode != 0 and "unknown namespace" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_steps_tasks_share_namespaces_of_their_own(sandbox, work):
    r = srun(sandbox, "-n4", "--container-unshare=net,ipc,uts", f"--container-image={DEBIAN}", NO_MPI,
             "bash", "-c", SHOW, cwd=work)
    assert r.returncode == 0, r.stderr
    seen, host = namespaces(r.stdout), host_namespaces()
    assert len(seen) == 4 and all(s == seen[0] for s in seen)
    assert all(seen[0][ns] != host[ns] for ns in host)


def test_the_environment_variable_and_no_unshare(sandbox, work):
    unshared = srun(sandbox, f"--container-image={DEBIAN}", NO_MPI, "bash", "-c", SHOW, cwd=work,
                    env={"PYXIS_CONTAINER_UNSHARE": "net"})
    plain = srun(sandbox, f"--container-image={DEBIAN}", NO_MPI, "bash", "-c", SHOW, cwd=work)
    host = host_namespaces()
    assert namespaces(unshared.stdout)[0]["net"] != host["net"], unshared.stderr
    assert namespaces(plain.stdout)[0] == host, plain.stderr


def test_only_a_loopback(sandbox, work):
    r = srun(sandbox, "--container-unshare=net", f"--container-image={DEBIAN}", NO_MPI, "bash", "-c",
             "exec </dev/tcp/127.0.0.1/65535 || exec </dev/tcp/10.255.255.53/53", cwd=work)
    assert r.returncode != 0
    assert "Connection refused" in r.stderr and "Network is unreachable" in r.stderr, r.stderr


def test_a_named_container_keeps_its_namespaces_for_the_steps_that_join_it(sandbox, work):
    script = work / "unshare-name.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"srun --overlap -n1 --container-image={DEBIAN} {NO_MPI} --container-name=withnet --container-unshare=net "
        "sleep 8 &\n"
        f"srun --overlap -n1 --container-image={DEBIAN} {NO_MPI} --container-name=nonet sleep 8 &\n"
        "sleep 4\n"
        f"srun --overlap -n1 --container-name=withnet bash -c '{SHOW}'\n"
        "srun --overlap -n1 --container-name=nonet --container-unshare=net true || echo REFUSED\n"
        "wait\n")
    subprocess.run(["chown", f"{sandbox.user}:{sandbox.user}", str(script)], check=True)
    job = sandbox.sbatch(script.read_text(), "-N1", "-n2", timeout=120)
    seen = namespaces(job.output)
    assert seen and seen[0]["net"] != host_namespaces()["net"], job.output
    assert "not in a separate net namespace" in job.output and "REFUSED" in job.output, job.output
