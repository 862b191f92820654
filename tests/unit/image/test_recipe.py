"""A .def recipe as a Docker build (issue 15): what each section becomes, and the sections refused or skipped, each
named on its own line with file:line."""

from __future__ import annotations

import tarfile

import pytest

from hpcctl.errors import HpcctlError
from hpcctl.image import recipe


def convert(tmp_path, text: str) -> recipe.Conversion:
    path = tmp_path / "r.def"
    path.write_text(text)
    return recipe.convert(path)


def test_post_is_one_script_and_runscript_the_cmd(tmp_path):
    c = convert(tmp_path, "Bootstrap: docker\nFrom: docker://Reg.example:5000/a/b:V1\n\n%post -c /bin/bash\n"
                          "    cd /opt\n    echo \"$HOME\" > x\n\n%runscript\n    exec tool \"$@\"\n")
    assert c.dockerfile.splitlines()[0] == "FROM Reg.example:5000/a/b:V1"
    assert '"/bin/bash /.hpcctl-post.sh; status=$?; rm -f /.hpcctl-post.sh; exit $status"' in c.dockerfile
    assert c.dockerfile.splitlines()[-1] == 'CMD ["/.singularity.d/runscript"]'
    files = tarfile.open(fileobj=c.context)
    assert files.extractfile(".hpcctl-post.sh").read() == b'cd /opt\necho "$HOME" > x\n'
    runscript = files.getmember(".singularity.d/runscript")
    assert runscript.mode == 0o755
    assert files.extractfile(runscript).read() == b'#!/bin/sh\n\nexec tool "$@"\n'


def test_environment_comes_after_post_and_a_line_that_is_no_assignment_is_a_note(tmp_path):
    c = convert(tmp_path, "Bootstrap: docker\nFrom: busybox\n%environment\n    export A=\"x y\"\n    B=2\n"
                          "    . /opt/env.sh\n%post\n    true\n")
    lines = c.dockerfile.splitlines()
    assert lines.index('ENV A="x y"') > next(i for i, line in enumerate(lines) if line.startswith("RUN"))
    assert "ENV B=2" in lines
    assert c.notes == [f"{tmp_path}/r.def: %environment line '. /opt/env.sh' is skipped: only NAME=VALUE lines "
                       "(with or without export) become the image's environment"]


def test_every_refused_section_is_named_at_once(tmp_path):
    with pytest.raises(HpcctlError) as err:
        convert(tmp_path, "Bootstrap: library\nFrom: alpine\n%setup\n    true\n%appinstall foo\n    true\n"
                          "%files from build\n    /a /b\n%weird\n")
    assert str(err.value).splitlines() == [
        f"{tmp_path}/r.def:1: 'Bootstrap: library' cannot be built: only 'Bootstrap: docker' (an image from a "
        "registry) is supported",
        f"{tmp_path}/r.def:3: %setup is not supported: it runs on the build host as root; copy files in with "
        "%files instead",
        f"{tmp_path}/r.def:5: %appinstall is not supported: SCIF apps are not supported",
        f"{tmp_path}/r.def:7: '%files from build' (files from another stage) is not supported",
        f"{tmp_path}/r.def:9: %weird is not a section hpcctl knows (supported: %files, %post, %environment, "
        "%runscript, %labels, %help)"]


def test_test_and_startscript_are_skipped_with_a_note(tmp_path):
    c = convert(tmp_path, "Bootstrap: docker\nFrom: busybox\n%test\n    true\n%startscript\n    true\n")
    assert c.notes == [f"{tmp_path}/r.def:3: %test is skipped: the build runs no tests (run them with srun after "
                       "the build)",
                       f"{tmp_path}/r.def:5: %startscript is skipped: hpcctl has no instances (start services in "
                       "the job script)"]


def test_a_missing_files_source_is_named(tmp_path):
    with pytest.raises(HpcctlError, match=r"%files source nope.txt does not exist"):
        convert(tmp_path, "Bootstrap: docker\nFrom: busybox\n%files\n    nope.txt /opt/\n")


def test_a_sections_first_line_is_the_sections_even_when_it_looks_like_a_header(tmp_path):
    """spython alone reads a section's first line as a header line: 'bootstrap' refused the recipe, 'from:' became
    the base image and a comment vanished."""
    c = convert(tmp_path, "Bootstrap: docker\nFrom: busybox\n%post\n    pip install bootstrap-utils\n    echo ok\n"
                          "%runscript\n    echo \"from: here\"\n%help\n    # usage: tool ARGS\n")
    assert c.dockerfile.splitlines()[0] == "FROM busybox"
    files = tarfile.open(fileobj=c.context)
    assert files.extractfile(".hpcctl-post.sh").read() == b"pip install bootstrap-utils\necho ok\n"
    assert files.extractfile(".singularity.d/runscript").read() == b'#!/bin/sh\n\necho "from: here"\n'
    assert files.extractfile(".singularity.d/runscript.help").read() == b"# usage: tool ARGS\n"


def test_a_files_pattern_needs_a_destination_and_a_match(tmp_path):
    with pytest.raises(HpcctlError, match=r"%files pattern \*\.cfg has no destination"):
        convert(tmp_path, "Bootstrap: docker\nFrom: busybox\n%files\n    *.cfg\n")
    with pytest.raises(HpcctlError, match=r"%files pattern \*\.cfg matches nothing"):
        convert(tmp_path, "Bootstrap: docker\nFrom: busybox\n%files\n    *.cfg /opt/\n")
    (tmp_path / "a.cfg").write_text("a")
    c = convert(tmp_path, "Bootstrap: docker\nFrom: busybox\n%files\n    *.cfg /opt\n")
    assert 'COPY ["files/0/", "/opt/"]' in c.dockerfile.splitlines()
    assert tarfile.open(fileobj=c.context).extractfile("files/0/a.cfg").read() == b"a"
