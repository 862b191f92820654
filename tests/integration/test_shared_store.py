"""The cluster-wide shared image store (issue 14): jobs on the sandbox's per-node caches with cache.shared on (the
sandbox's /etc/hpcctl/site-shared.yaml, switched on through plugstack.conf's site= for each test), as hpcuser."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shared_store_helpers import hpcctl, point_plugin_at, push_cold, shared_entry

from hpcctl.sandbox import layout as L
from hpcctl.sandbox import registry as sandbox_registry

pytestmark = pytest.mark.integration

COLD_REPO = "hpcctl/shared-cold"
SRUN = ("srun", "--container-mpi=none", "--container-workdir=/")


@pytest.fixture
def shared(sandbox):
    """The plugin reads the shared-store site config for this test (_srun switches plugstack.conf's site= again
    before each job: other tests rewrite that file too); the store's directory and account exist."""
    from hpcctl.sandbox import up, users
    users.ensure_store_account()
    up._shared_site_config()
    yield sandbox
    point_plugin_at(L.SITE_FILE)


def _digest(ref: str) -> str:
    return json.loads(hpcctl("image", "resolve", "--json", ref).stdout)["digest"]


def _node_has(node: str, digest: str) -> bool:
    return (Path(f"/var/lib/hpcctl/nodes/{node}/cache/images") / f"{digest.split(':', 1)[1]}.json").exists()


def _srun(sandbox, *args: str, timeout: float = 300):
    point_plugin_at(L.SHARED_SITE_FILE)
    return sandbox.run([*SRUN, *args], user=sandbox.user, check=False, timeout=timeout, cwd=sandbox.workdir())


def test_a_two_node_job_with_a_cold_image_converts_it_once_and_pulls_each_blob_once(shared):
    ref, layer = push_cold(shared.registry, COLD_REPO, payload_mb=8)
    digest = _digest(ref)
    since = sandbox_registry.log_offset("registry")
    ran = _srun(shared, "-N", "2", "--ntasks-per-node=1", f"--container-image={ref}", "sh", "-c",
                'echo "$(cat /payload/tag) $COLD_TAG"')
    assert ran.returncode == 0, ran.stderr
    tag = ref.rsplit(":", 1)[1]
    assert ran.stdout.splitlines() == [f"{tag} {tag}"] * 2
    served = sandbox_registry.blob_traffic("registry", since, repository=COLD_REPO)
    assert served.gets[layer] == 1 and set(served.gets.values()) == {1}, served  # one pull for the cluster
    entry = shared_entry(digest)
    assert entry and entry["converted_on"] in ("n1", "n2")
    sqsh = L.SHARED_STORE / "images" / f"{digest.split(':', 1)[1]}.sqsh"
    owner = pwd.getpwnam(L.STORE_USER)
    assert (sqsh.stat().st_uid, sqsh.stat().st_mode & 0o777) == (owner.pw_uid, 0o644)
    assert not _node_has("n1", digest) and not _node_has("n2", digest)  # mount mode: both used the shared file
    assert {p.name.split(".")[0] for p in (L.SHARED_STORE / "uses" / digest.split(":", 1)[1]).iterdir()} == \
        {"n1", "n2"}


def test_a_conversion_killed_mid_way_is_taken_over_and_the_job_starts(shared):
    """SIGKILL to the converting process group (a node crash: its heartbeat stops too). The partial file is never
    an entry; a job on both nodes waits for the heartbeat to go stale, takes the conversion over and runs."""
    ref, layer = push_cold(shared.registry, COLD_REPO, payload_mb=400)
    digest = _digest(ref)
    key = digest.split(":", 1)[1]
    lock = L.SHARED_STORE / "locks" / f"{key}.lock"
    crashed = subprocess.Popen([sys.executable, "-m", "hpcctl", "--site", str(L.SHARED_SITE_FILE), "image", "pull",
                                "--json", "--node", "n1", ref], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while not lock.exists() and crashed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.wait()
    assert lock.exists() and shared_entry(digest) is None, "the conversion finished before it could be killed"
    assert not (L.SHARED_STORE / "images" / f"{key}.sqsh").exists()

    started = time.monotonic()
    ran = _srun(shared, "-N", "2", "--ntasks-per-node=1", f"--container-image={ref}", "cat", "/payload/tag")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [ref.rsplit(":", 1)[1]] * 2
    assert time.monotonic() - started > 10  # it waited for the dead holder's heartbeat to go stale
    assert shared_entry(digest)["converted_on"] in ("n1", "n2")
    assert not lock.exists() and not Path(f"{lock}.takeover").exists()
    hpcctl("image", "rm", "--node", "n1", digest, check=False)  # 400 MiB: not kept for nothing


def test_a_partial_file_in_the_store_is_never_mounted(shared):
    """A publication that died between moving the squashfs in and writing its metadata leaves a file that is no
    entry: the next job converts again and gets the complete image."""
    ref, _ = push_cold(shared.registry, COLD_REPO, payload_mb=2)
    digest = _digest(ref)
    key = digest.split(":", 1)[1]
    owner = pwd.getpwnam(L.STORE_USER)
    (L.SHARED_STORE / "images").mkdir(exist_ok=True)
    partial = L.SHARED_STORE / "images" / f"{key}.sqsh"
    partial.write_bytes(b"hsqs" + b"\0" * 4092)  # the start of a squashfs, cut off
    os.chown(partial, owner.pw_uid, owner.pw_gid)
    ran = _srun(shared, "-w", "n2", f"--container-image={ref}", "cat", "/payload/tag")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ref.rsplit(":", 1)[1] + "\n"
    assert partial.stat().st_size == shared_entry(digest)["size"] > 4096


def test_users_cannot_write_the_shared_store(shared):
    ref, _ = push_cold(shared.registry, COLD_REPO)
    assert _srun(shared, "-w", "n1", f"--container-image={ref}", "true").returncode == 0
    key = _digest(ref).split(":", 1)[1]
    store = L.SHARED_STORE
    attempts = {
        "new file at the top": f"touch {store}/planted",
        "new image": f"cp /bin/true {store}/images/planted.sqsh",
        "replace an image": f"cp /bin/true {store}/images/{key}.sqsh",
        "rename an image away": f"mv {store}/images/{key}.sqsh {store}/images/{key}.old",
        "change its metadata": f"echo '{{}}' > {store}/images/{key}.json",
        "a lock": f"touch {store}/locks/{key}.lock",
        "a use record": f"mkdir -p {store}/uses/{key} && touch {store}/uses/{key}/n1.1",
        "a partial file": f"touch {store}/tmp/x",
    }
    for what, command in attempts.items():
        result = shared.run(["sh", "-c", command], user=shared.user, check=False)
        assert result.returncode != 0, f"hpcuser could write the shared store: {what}"
    assert shared_entry(_digest(ref)) is not None


def test_a_private_image_in_the_store_is_refused_to_a_user_the_registry_rejects(shared):
    ref, _ = push_cold(shared.auth_registry, "private/shared-cold", username=shared.auth_user,
                       password=shared.auth_password)
    home = Path(pwd.getpwnam(shared.user).pw_dir)
    netrc = home / ".config/enroot/.credentials"
    shared.run(["mkdir", "-p", str(netrc.parent)], user=shared.user)

    def password(word: str) -> None:
        shared.run(["sh", "-c", f"umask 077; echo 'machine {shared.auth_registry} login {shared.auth_user} "
                                f"password {word}' > {netrc}"], user=shared.user)
    try:
        password(shared.auth_password)
        ran = _srun(shared, "-w", "n1", f"--container-image={ref}", "cat", "/payload/tag")
        assert ran.returncode == 0, ran.stderr
        key = json.loads(hpcctl("image", "resolve", "--json", "--uid", str(pwd.getpwnam(shared.user).pw_uid),
                                ref).stdout)["digest"].split(":", 1)[1]
        sqsh = L.SHARED_STORE / "images" / f"{key}.sqsh"
        assert sqsh.stat().st_mode & 0o777 == 0o600  # only the store's owner reads it
        assert shared.run(["cat", str(sqsh)], user=shared.user, check=False).returncode != 0
        password("not-the-password")
        refused = _srun(shared, "-w", "n2", f"--container-image={ref}", "cat", "/payload/tag")
        assert refused.returncode != 0
        assert f"registry {shared.auth_registry} refused the credentials of '{shared.auth_user}'" in refused.stderr
        assert ref.rsplit(":", 1)[1] not in refused.stdout
    finally:
        netrc.unlink(missing_ok=True)


def test_gc_keeps_an_image_a_running_job_uses_and_removes_it_after(shared):
    ref, _ = push_cold(shared.registry, COLD_REPO)
    digest = _digest(ref)
    key = digest.split(":", 1)[1]
    point_plugin_at(L.SHARED_SITE_FILE)
    job = shared.run(["sbatch", "--parsable", "-w", "n1", "--wrap",
                      f"srun --container-mpi=none --container-image={ref} sleep 20"],
                     user=shared.user, cwd=shared.workdir()).stdout.strip().split(";")[0]
    records = L.SHARED_STORE / "uses" / key
    deadline = time.monotonic() + 120
    while not (records / f"n1.{job}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (records / f"n1.{job}").exists(), shared.job_state(job)

    kept = json.loads(hpcctl("image", "gc", "--node", "n1", "--target", "0", "--json").stdout)
    tier = next(r for r in kept if r["tier"] == "shared")
    assert any(ref in item and f"n1.{job}" in item for item in tier["in_use"]), tier
    assert shared_entry(digest) is not None

    assert shared.wait(job)[0] == "COMPLETED"
    gone = json.loads(hpcctl("image", "gc", "--node", "n1", "--target", "0", "--json").stdout)
    tier = next(r for r in gone if r["tier"] == "shared")
    assert digest in [item["digest"] for item in tier["removed"]]
    assert shared_entry(digest) is None and not records.exists()


def test_site_check_validates_the_store_and_prints_one_fingerprint_on_every_node(shared):
    def check(node: str) -> tuple[int, dict]:
        result = hpcctl("site", "check", "--json", "--node", node, str(L.SHARED_SITE_FILE), check=False)
        found = {f["what"]: f for f in json.loads(result.stdout)["findings"] if f["section"] == "cache.shared"}
        return result.returncode, found

    code, n1 = check("n1")
    assert code == 0 and all(f["found"] for f in n1.values()), n1
    fingerprint = n1["fingerprint (compare across nodes)"]["detail"]
    assert check("n2")[1]["fingerprint (compare across nodes)"]["detail"] == fingerprint
    L.SHARED_STORE.chmod(0o775)
    try:
        code, found = check("n1")
        assert code == 1 and not found["writable by the owner only"]["found"]
    finally:
        L.SHARED_STORE.chmod(0o755)
    as_user = shared.run([sys.executable, "-m", "hpcctl", "--site", str(L.SHARED_SITE_FILE), "site", "check",
                          "--node", "n1", str(L.SHARED_SITE_FILE)], user=shared.user, check=False)
    assert "not tested: run `hpcctl site check` as root" in as_user.stdout


def test_copy_mode_converts_once_and_each_node_copies_the_store_file_into_its_cache(shared, tmp_path):
    copy_site = tmp_path / "site-copy.yaml"
    copy_site.write_text(L.SHARED_SITE_FILE.read_text().replace("mode: mount", "mode: copy"))
    ref, layer = push_cold(shared.registry, COLD_REPO, payload_mb=4)
    since = sandbox_registry.log_offset("registry")
    pulled = {}
    for node in ("n1", "n2"):
        result = subprocess.run([sys.executable, "-m", "hpcctl", "--site", str(copy_site), "image", "pull", "--json",
                                 "--node", node, ref], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        pulled[node] = json.loads(result.stdout)
    assert sandbox_registry.blob_traffic("registry", since, repository=COLD_REPO).gets[layer] == 1
    digest = pulled["n1"]["digest"]
    assert pulled["n1"]["path"].startswith("/var/lib/hpcctl/nodes/n1/cache/")
    assert pulled["n2"]["path"].startswith("/var/lib/hpcctl/nodes/n2/cache/")
    assert _node_has("n1", digest) and _node_has("n2", digest) and shared_entry(digest)["converted_on"] == "n1"
    copied = json.loads(Path(pulled["n2"]["path"]).with_suffix(".json").read_text())
    assert copied["shared_store"] == str(L.SHARED_STORE)
    assert Path(pulled["n2"]["path"]).read_bytes() == (L.SHARED_STORE / "images" / Path(pulled["n2"]["path"]).name
                                                       ).read_bytes()
    listed = json.loads(subprocess.run([sys.executable, "-m", "hpcctl", "--site", str(copy_site), "image", "ls",
                                        "--json"], capture_output=True, text=True, check=True).stdout)
    assert sorted(row["tier"] for row in listed if row["digest"] == digest) == ["node", "node", "shared"]


def test_the_c_side_opens_a_store_image_with_the_owners_rights_not_roots(shared, tmp_path):
    """The plan's image_open_as: with the file unreadable by its owner (root could still read it), the container
    cannot be set up; the same plan without image_open_as (root's rights) runs."""
    ref, _ = push_cold(shared.registry, COLD_REPO)
    planned = hpcctl("run", "--plan-only", "--json", "--node", "n1", "--user", shared.user, "--mpi", "none", ref)
    doc = json.loads(planned.stdout)
    owner = pwd.getpwnam(L.STORE_USER)
    assert doc["plan"]["image_open_as"] == {"uid": owner.pw_uid, "gid": owner.pw_gid}
    image = Path(doc["plan"]["image"])
    assert image.parent == L.SHARED_STORE / "images"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    exec_ = "/usr/local/lib/hpcctl/hpcctl-exec"
    tag = ref.rsplit(":", 1)[1]
    assert subprocess.run([exec_, str(plan), "--", "cat", "/payload/tag"], capture_output=True, text=True,
                          timeout=60).stdout == tag + "\n"
    image.chmod(0o000)
    try:
        refused = subprocess.run([exec_, str(plan), "--", "cat", "/payload/tag"], capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 125 and f"cannot open image {image}: Permission denied" in refused.stderr
        as_root = tmp_path / "as-root.json"
        as_root.write_text(json.dumps({**doc, "plan": {**doc["plan"], "image_open_as": None}}))
        assert subprocess.run([exec_, str(as_root), "--", "cat", "/payload/tag"], capture_output=True, text=True,
                              timeout=60).stdout == tag + "\n"
    finally:
        image.chmod(0o644)


@pytest.fixture
def sixteen_nodes(sandbox):
    """At least 16 sandbox nodes (`sandbox up --nodes 16`), started here when fewer run and stopped after."""
    before = L.node_count()
    if before < 16:
        subprocess.run([sys.executable, "-m", "hpcctl", "sandbox", "up", "-q", "--no-images", "--nodes", "16"],
                       check=True, timeout=600)
    yield
    if before < 16:
        subprocess.run([sys.executable, "-m", "hpcctl", "sandbox", "up", "-q", "--no-images", "--nodes",
                        str(before)], check=True, timeout=600)


@pytest.mark.slow16
def test_a_sixteen_node_job_with_a_cold_image_converts_it_once(shared, sixteen_nodes):
    ref, layer = push_cold(shared.registry, COLD_REPO, payload_mb=8)
    digest = _digest(ref)
    since = sandbox_registry.log_offset("registry")
    ran = _srun(shared, "-p", L.SCALE_PARTITION, "-N16", "-w", "n[1-16]", f"--container-image={ref}", "sh", "-c",
                'echo "$SLURMD_NODENAME $(cat /payload/tag)"', timeout=600)
    assert ran.returncode == 0, ran.stderr
    tag = ref.rsplit(":", 1)[1]
    assert sorted(ran.stdout.splitlines()) == sorted(f"n{i} {tag}" for i in range(1, 17))
    served = sandbox_registry.blob_traffic("registry", since, repository=COLD_REPO)
    assert served.gets[layer] == 1 and set(served.gets.values()) == {1}, served
    assert not any(_node_has(f"n{i}", digest) for i in range(1, 17))
    assert len(list((L.SHARED_STORE / "uses" / digest.split(":", 1)[1]).iterdir())) == 16


def test_image_rm_removes_a_store_image_as_root_only(shared):
    ref, _ = push_cold(shared.registry, COLD_REPO)
    digest = json.loads(hpcctl("image", "pull", "--json", "--node", "n1", ref).stdout)["digest"]
    listed = json.loads(hpcctl("image", "ls", "--json").stdout)
    assert [row["tier"] for row in listed if row["digest"] == digest] == ["shared"]
    as_user = shared.run([sys.executable, "-m", "hpcctl", "--site", str(L.SHARED_SITE_FILE), "image", "rm",
                          "--node", "n1", digest], user=shared.user, check=False)
    assert as_user.returncode != 0 and "only root can remove images from the shared store" in as_user.stderr
    removed = json.loads(hpcctl("image", "rm", "--json", "--node", "n1", digest).stdout)
    assert [(item["digest"], item["tier"]) for item in removed] == [(digest, "shared")]
    assert shared_entry(digest) is None
