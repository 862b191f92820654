"""A Singularity/Apptainer ``.def`` recipe as a Docker build: the Dockerfile and the build context to send.

spython's ``SingularityParser`` splits the recipe into its sections. The Dockerfile is written here rather than by
spython's ``DockerWriter``, whose output is not what a Singularity user expects: it makes each ``%post`` line its
own ``RUN`` (a ``cd`` or a loop spanning lines breaks), echoes a multi-line ``%runscript`` into a file with its
``$`` expanded at build time, ``ADD``s ``%files`` (which unpacks archives) and sets ``%environment`` before
``%post`` runs. Here, as Apptainer builds it:

- ``Bootstrap: docker`` + ``From:`` -> ``FROM`` (the only bootstrap agent; others are refused)
- ``%files`` -> ``COPY`` (sources relative to the recipe's directory), before ``%post``
- ``%post`` -> one script run by ``/bin/sh -e -x`` (or ``%post -c INTERPRETER``)
- ``%environment`` -> ``ENV`` (its ``NAME=VALUE`` lines, ``export`` or not; seen at run time, not by ``%post``)
- ``%runscript`` -> ``/.singularity.d/runscript`` (``#!/bin/sh``), the image's ``CMD``
- ``%labels`` -> ``LABEL``; ``%help`` -> ``/.singularity.d/runscript.help``; the recipe itself ->
  ``/.singularity.d/Singularity``
"""

from __future__ import annotations

import glob
import io
import json
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from hpcctl.errors import HpcctlError

SUPPORTED = ("files", "post", "environment", "runscript", "labels", "help")
SKIPPED = {"test": "the build runs no tests (run them with srun after the build)",
           "startscript": "hpcctl has no instances (start services in the job script)"}
REFUSED = {"setup": "it runs on the build host as root; copy files in with %files instead",
           "arguments": "build-time arguments are not supported; write the values into the recipe",
           "appinstall": "SCIF apps are not supported", "appfiles": "SCIF apps are not supported",
           "appenv": "SCIF apps are not supported", "apprun": "SCIF apps are not supported",
           "applabels": "SCIF apps are not supported", "apphelp": "SCIF apps are not supported",
           "apptest": "SCIF apps are not supported", "appstart": "SCIF apps are not supported"}
_SECTION = re.compile(r"^\s*%([A-Za-z]+)\b(.*)$")
_HEADER = re.compile(r"^\s*([A-Za-z]+)\s*:\s*(.*?)\s*$")
_ASSIGNMENT = re.compile(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*=")
POST_SCRIPT = "/.hpcctl-post.sh"


@dataclass
class Conversion:
    """What the Docker build gets: ``dockerfile``, the ``context`` tar (with it; an unnamed temporary file, read from
    the start), and ``notes`` for the user (one line per section or line of the recipe that is skipped)."""

    dockerfile: str
    context: BinaryIO
    notes: list[str] = field(default_factory=list)


@dataclass
class _Section:
    name: str
    line: int
    args: str


def _sections(lines: list[str]) -> tuple[dict[str, tuple[int, str]], list[_Section]]:
    """The header keywords (with their line numbers) before the first section, and every section's header."""
    header: dict[str, tuple[int, str]] = {}
    sections: list[_Section] = []
    for number, text in enumerate(lines, 1):
        section = _SECTION.match(text)
        if section:
            sections.append(_Section(section.group(1).lower(), number, section.group(2).strip()))
            continue
        keyword = _HEADER.match(text) if not sections else None
        if keyword and not text.lstrip().startswith("#"):
            header[keyword.group(1).lower()] = (number, keyword.group(2))
    return header, sections


def _parse(path: Path, lines: list[str]) -> dict[str, list[str]]:
    """spython's parse of the recipe's ``lines``, with each section's lines as written (its own mapping of %post,
    %runscript and %help into Dockerfile commands is replaced, see the module docstring)."""
    from spython.main.parse.parsers import SingularityParser

    bodies: dict[str, list[str]] = {}

    class Parser(SingularityParser):
        def _get_mapping(self, section):
            return lambda lines, *_: bodies.setdefault(section.lower(), []).extend(lines)

        def _comments(self, lines):
            return None

    parser = Parser(filename=None, load=False)
    # spython reads a section's first line as a header line ("From:", "Bootstrap", "Stage:", a comment): a blank
    # line after each section header hands every line of the section to the section
    parser.lines = [text for line in lines for text in ([line, ""] if _SECTION.match(line) else [line])]
    try:
        parser.parse()
    except NotImplementedError:
        raise HpcctlError(f"{path}: a line inside a section starts a new recipe for spython ('Bootstrap:')",
                          "move that text out of the recipe, e.g. into a script copied in with %files") from None
    return bodies


def convert(path: Path) -> Conversion:
    """The Docker build of the recipe at ``path``; raises HpcctlError naming every section it cannot build, one
    line each, before anything runs."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HpcctlError(f"cannot read the recipe {path}: {exc.strerror if isinstance(exc, OSError) else exc}",
                          "give the path of a readable .def file") from None
    lines = text.splitlines()
    header, sections = _sections(lines)
    problems, notes = [], []
    bootstrap = header.get("bootstrap")
    if bootstrap is None or bootstrap[1].lower() != "docker":
        where = f"{path}:{bootstrap[0]}" if bootstrap else str(path)
        agent = f"'Bootstrap: {bootstrap[1]}'" if bootstrap else "no Bootstrap: line"
        problems.append(f"{where}: {agent} cannot be built: only 'Bootstrap: docker' (an image from a registry) is "
                        "supported")
    if "from" not in header or not header["from"][1]:
        problems.append(f"{path}: no 'From:' line (write From: IMAGE, the registry image to start from)")
    if "stage" in header or sum(1 for n in lines if re.match(r"\s*bootstrap\s*:", n, re.IGNORECASE)) > 1:
        problems.append(f"{path}: multi-stage recipes are not supported (build one stage per recipe)")
    seen = set()
    for section in sections:
        if section.name in REFUSED:
            problems.append(f"{path}:{section.line}: %{section.name} is not supported: {REFUSED[section.name]}")
        elif section.name in SKIPPED:
            notes.append(f"{path}:{section.line}: %{section.name} is skipped: {SKIPPED[section.name]}")
        elif section.name not in SUPPORTED:
            problems.append(f"{path}:{section.line}: %{section.name} is not a section hpcctl knows (supported: "
                            + ", ".join(f"%{s}" for s in SUPPORTED) + ")")
        elif section.name == "files" and section.args:
            problems.append(f"{path}:{section.line}: '%files {section.args}' (files from another stage) is not "
                            "supported")
        elif section.name in seen:
            problems.append(f"{path}:{section.line}: %{section.name} appears twice (merge the two sections)")
        seen.add(section.name)
    if problems:
        raise HpcctlError("\n".join(problems))
    bodies = _parse(path, lines)
    return _build(path, text, header["from"][1].removeprefix("docker://"), bodies, {s.name: s for s in sections}, notes)


def _build(path: Path, text: str, base: str, bodies: dict[str, list[str]], sections: dict[str, _Section],
           notes: list[str]) -> Conversion:
    context = _Context()
    dockerfile = [f"FROM {base}"]
    for number, line in enumerate(n for n in bodies.get("files", ()) if not n.startswith("#")):
        parts = line.split()
        if len(parts) > 2:
            raise HpcctlError(f"{path}: %files line '{line}' has more than a source and a destination",
                              "write one 'SOURCE [DESTINATION]' per line, without spaces in the paths")
        source, dest = parts[0], parts[-1]
        dest = dest if dest.startswith("/") else "/" + dest
        name = f"files/{number}"
        if any(c in source for c in "*?["):  # a pattern, as Apptainer's %files takes: its matches go into DEST/
            if len(parts) == 1:
                raise HpcctlError(f"{path}: %files pattern {source} has no destination",
                                  "write the directory to copy the matches into after it")
            matches = sorted(glob.glob(str(path.parent / source)))
            if not matches:
                raise HpcctlError(f"{path}: %files pattern {source} matches nothing",
                                  "paths in %files are relative to the recipe's directory")
            for match in matches:
                context.add_path(f"{name}/{Path(match).name}", Path(match).resolve())
            dockerfile.append(f"COPY {json.dumps([name + '/', dest.rstrip('/') + '/'])}")
            continue
        local = (path.parent / source).resolve()
        if not local.exists():
            raise HpcctlError(f"{path}: %files source {source} does not exist ({local})",
                              "paths in %files are relative to the recipe's directory")
        context.add_path(name, local)
        dockerfile.append(f"COPY {json.dumps([name, dest])}")
    context.add_bytes(".singularity.d/Singularity", text.encode(), 0o644)
    if "help" in bodies:
        context.add_bytes(".singularity.d/runscript.help", ("\n".join(bodies["help"]) + "\n").encode(), 0o644)
    if "runscript" in bodies:
        interpreter = _interpreter(sections["runscript"], "/bin/sh")
        script = f"#!{interpreter}\n\n" + "\n".join(bodies["runscript"]) + "\n"
        context.add_bytes(".singularity.d/runscript", script.encode(), 0o755)
    dockerfile.append('COPY [".singularity.d", "/.singularity.d/"]')
    if bodies.get("post"):
        interpreter = _interpreter(sections["post"], "/bin/sh -e -x")
        context.add_bytes(POST_SCRIPT.lstrip("/"), ("\n".join(bodies["post"]) + "\n").encode(), 0o700)
        dockerfile.append(f'COPY ["{POST_SCRIPT.lstrip("/")}", "{POST_SCRIPT}"]')
        run = f"{interpreter} {POST_SCRIPT}; status=$?; rm -f {POST_SCRIPT}; exit $status"
        dockerfile.append(f"RUN {json.dumps(['/bin/sh', '-c', run])}")
    for label in (n for n in bodies.get("labels", ()) if not n.startswith("#")):
        key, _, value = label.partition(" ")
        dockerfile.append(f"LABEL {json.dumps(key)}={json.dumps(value.strip())}")
    for line in bodies.get("environment", ()):
        if _ASSIGNMENT.match(line):
            dockerfile.append("ENV " + re.sub(r"^export\s+", "", line))
        elif not line.startswith("#"):
            notes.append(f"{path}: %environment line '{line}' is skipped: only NAME=VALUE lines (with or without "
                         "export) become the image's environment")
    if "runscript" in bodies:
        dockerfile.append('CMD ["/.singularity.d/runscript"]')
    text_dockerfile = "\n".join(dockerfile) + "\n"
    context.add_bytes("Dockerfile", text_dockerfile.encode(), 0o644)
    return Conversion(text_dockerfile, context.finish(), notes)


def _interpreter(section: _Section, default: str) -> str:
    """``%post -c /bin/bash``: the interpreter Apptainer runs the section with."""
    match = re.match(r"-c\s+(\S+)", section.args)
    return match.group(1) if match else default


class _Context:
    """The build context: an uncompressed tar with root-owned entries, in an unnamed temporary file (%files may be
    large)."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()
        self.tar = tarfile.open(fileobj=self.file, mode="w")

    def add_bytes(self, name: str, data: bytes, mode: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), mode
        self.tar.addfile(info, io.BytesIO(data))

    def add_path(self, name: str, local: Path) -> None:
        def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info
        self.tar.add(str(local), arcname=name, filter=owned_by_root)

    def finish(self) -> BinaryIO:
        self.tar.close()
        self.file.seek(0)
        return self.file
