"""The contract between the Python core and the C side: one JSON Schema (hpcctl/container/container.schema.json),
which Python's documents satisfy and whose examples C reads as they say (issue 12)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import hpcctl.container

pytestmark = pytest.mark.integration

SCHEMA = json.loads((Path(hpcctl.container.__file__).parent / "container.schema.json").read_text())
EXEC = "/usr/local/lib/hpcctl/hpcctl-exec"


def c_reads(doc: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    return subprocess.run([EXEC, "--check", str(path)], capture_output=True, text=True)


def expected_lines(doc: dict) -> list[str]:
    """What hpcctl-exec --check prints for ``doc``, from the schema's meaning of each key."""
    plan = doc["plan"]
    flag = {True: 1, False: 0}
    out = [f"image {plan['image']} user_file={flag[plan.get('image_user_file', False)]} "
           f"owner_idmap={flag[plan.get('owner_idmap', False)]} writable={flag[plan.get('writable', False)]} "
           f"ldconfig={flag[plan.get('ldconfig', False)]} uid={doc['uid']} gid={doc['gid']} "
           f"groups={len(doc['groups'])}"]
    for m in plan["mounts"]:
        flags = m.get("flags", [])
        propagation = next((f.lstrip("r") if f.startswith("r") and f != "rbind" else f for f in flags
                            if f.lstrip("r") in ("private", "slave", "shared", "unbindable")), "private")
        out.append(f"mount {m['target']} {m.get('kind', 'bind')} {m['source']} create={m.get('create', 'auto')} "
                   f"ro={flag[m.get('readonly', False)]} as_user={flag[m.get('as_user', False)]} "
                   f"late={flag[m.get('late', False)]} noexec={flag['noexec' in flags]} "
                   f"recursive={flag['bind' not in flags]} propagation={propagation}")
    out += [f"env {e['op']} {e['name']}={e.get('value', '')}" for e in plan["env"]]
    out += [f"ldconfig_dir {d}" for d in plan.get("ldconfig_dirs", [])]
    return out


@pytest.mark.parametrize("index", range(len(SCHEMA["examples"])))
def test_c_reads_the_schemas_examples_as_they_say(sandbox, tmp_path, index):
    example = SCHEMA["examples"][index]
    jsonschema.validate(example, SCHEMA)
    result = c_reads(example, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected_lines(example)


BROKEN = {
    "relative target": {"mounts": [{"source": "/a", "target": "a"}]},
    "unknown flag": {"mounts": [{"source": "/a", "target": "/a", "flags": ["suid"]}]},
    "unknown kind": {"mounts": [{"source": "/a", "target": "/a", "kind": "overlay"}]},
    "unknown env op": {"env": [{"op": "eval", "name": "A"}]},
    "mounts not a list": {"mounts": {"source": "/a"}},
    "negative image offset": {"image_offset": -4096},
}


@pytest.mark.parametrize("change", BROKEN.values(), ids=BROKEN.keys())
def test_documents_the_schema_refuses_c_refuses_too(sandbox, tmp_path, change):
    doc = json.loads(json.dumps(SCHEMA["examples"][0]))
    doc["plan"].update(change)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)
    result = c_reads(doc, tmp_path)
    assert result.returncode == 125 and len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("args", [[], ["--gpus", "1", "--node", "n1", "--mpi", "openmpi"],
                                  ["--mounts", "/tmp:/data:ro", "--writable", "--entrypoint"]],
                         ids=["plain", "gpu-mpi", "mounts"])
def test_pythons_documents_satisfy_the_schema_and_c_reads_them(sandbox, tmp_path, args):
    node = [] if "--node" in args else ["--node", "n1"]  # each sandbox node has its own image cache
    r = sandbox.run([sys.executable, "-m", "hpcctl", "run", "--plan-only", "--json", *node, *args,
                     f"{sandbox.registry}/hpcctl/openmpi:bookworm", "--", "true"],
                    env={"SUDO_USER": sandbox.user}, check=True, timeout=120, cwd="/")
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCHEMA)
    result = c_reads(doc, tmp_path)
    assert result.returncode == 0 and result.stdout.splitlines() == expected_lines(doc), result.stderr
