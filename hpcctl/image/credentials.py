"""Registry credentials of one user: Docker's config.json (and its credential helpers) and enroot's netrc file.

When root asks on behalf of another user, the files are read (and helpers run) in a child process that runs as
that user, so a symlink in the user's home cannot make root read a file the user could not.
Run as a module (``python -m hpcctl.image.credentials``) it is that child: JSON request on stdin, JSON on stdout.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hpcctl.errors import HpcctlError

DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    source: str  # where they came from, for error messages

    def __repr__(self) -> str:
        return f"Credentials({self.username!r}, <hidden>, {self.source!r})"


def parse_netrc(text: str) -> list[tuple[str, str, str]]:
    """(machine, login, password) entries of a netrc file; 'default' entries have machine ''. Several logins per
    machine are kept (enroot allows them; the reference's USER@ picks one)."""
    tokens = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        tokens.extend(line.split())
    entries, current = [], None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("machine", "default"):
            if current:
                entries.append(current)
            current = {"machine": tokens[i + 1] if tok == "machine" and i + 1 < len(tokens) else ""}
            i += 2 if tok == "machine" else 1
            continue
        if current is not None and tok in ("login", "password", "account") and i + 1 < len(tokens):
            current[tok] = tokens[i + 1]
            i += 2
            continue
        if tok == "macdef":
            break
        i += 1
    if current:
        entries.append(current)
    return [(e["machine"], e.get("login", ""), e.get("password", "")) for e in entries if "password" in e]


def _netrc_lookup(path: Path, registry: str, user: str | None) -> Credentials | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HpcctlError(f"cannot read credentials file {path}: {exc.strerror}",
                          "make it readable by its owner (chmod 600)") from None
    hosts = {registry, registry.split(":")[0]}
    if registry == "docker.io":
        hosts.update(h for h in DOCKER_HUB_KEYS if "/" not in h)
    default = None
    for machine, login, password in parse_netrc(text):
        if user and login != user:
            continue
        if machine in hosts:
            return Credentials(login, password, str(path))
        if machine == "" and default is None:
            default = Credentials(login, password, str(path))
    return default


def _docker_lookup(home: Path, registry: str, user: str | None) -> Credentials | None:
    config_dir = Path(os.environ.get("DOCKER_CONFIG") or home / ".docker")
    config_file = config_dir / "config.json"
    if not config_file.exists():
        return None
    from docker import auth
    from docker.errors import DockerException
    try:
        config = auth.load_config(str(config_file))
        found = auth.resolve_authconfig(config, "index.docker.io" if registry == "docker.io" else registry)
    except (DockerException, OSError, ValueError) as exc:
        raise HpcctlError(f"cannot read Docker credentials from {config_file}: {exc}",
                          "fix the file or the credential helper it names") from None
    if not found:
        return None
    username = found.get("Username") or found.get("username") or ""
    password = found.get("Password") or found.get("password") or found.get("IdentityToken") or ""
    if not password or (user and username != user):
        return None
    return Credentials(username, password, str(config_file))


def lookup_here(registry: str, user: str | None, netrc: str, docker_config: bool,
                home: str | None = None) -> Credentials | None:
    """Credentials from the current process's user files: Docker's config first, then the netrc file."""
    home_path = Path(home or os.path.expanduser("~"))
    if docker_config:
        found = _docker_lookup(home_path, registry, user)
        if found:
            return found
    netrc_path = Path(netrc.replace("~", str(home_path), 1) if netrc.startswith("~") else netrc)
    return _netrc_lookup(netrc_path, registry, user)


def lookup(registry: str, user: str | None, uid: int | None, netrc: str, docker_config: bool) -> Credentials | None:
    """Credentials of ``uid`` (default: whoever runs this) for ``registry``; USER@ in the reference picks a login."""
    euid = os.geteuid()
    if uid is None or uid == euid:
        return lookup_here(registry, user, netrc, docker_config)
    if euid != 0:
        raise HpcctlError(f"cannot read the registry credentials of uid {uid} as uid {euid}",
                          "run as root or as that user")
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        raise HpcctlError(f"uid {uid} has no passwd entry", "pass the uid of an existing user") from None
    request = json.dumps({"registry": registry, "user": user, "netrc": netrc, "docker_config": docker_config})
    env = {"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name, "PATH": "/usr/local/bin:/usr/bin:/bin",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    try:
        result = subprocess.run([sys.executable, "-m", "hpcctl.image.credentials"], input=request,
                                capture_output=True, text=True, timeout=60, env=env, cwd="/",
                                user=uid, group=entry.pw_gid, extra_groups=[])
    except subprocess.TimeoutExpired:
        raise HpcctlError(f"reading the registry credentials of {entry.pw_name} took over 60 s",
                          "check the credential helper in their ~/.docker/config.json") from None
    if result.returncode != 0:
        message = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise HpcctlError(f"cannot read the registry credentials of {entry.pw_name}: {message}")
    answer = json.loads(result.stdout)
    return Credentials(**answer) if answer else None


def main() -> None:
    request = json.loads(sys.stdin.read())
    try:
        found = lookup_here(request["registry"], request["user"], request["netrc"], request["docker_config"])
    except HpcctlError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(1)
    json.dump(found.__dict__ if found else None, sys.stdout)


if __name__ == "__main__":
    main()
