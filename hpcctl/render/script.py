"""Render a job's batch script from `templates/job.sh.j2`, or from the site's own template directory.

A site's `templates.dir` comes first in the search path; its `job.sh.j2` may replace ours entirely or
`{% extends "hpcctl/job.sh.j2" %}` and override single blocks (`directives`, `prologue`, `launch`).
Undefined variables are errors (StrictUndefined), never silently empty.

Every `{{ value }}` is written as one sh word (quoted as autoescaping would escape HTML), except the text hpcctl has
already written for its place (`sbatch` lines, `srun` options, `command`; see `Verbatim`): a value from the spec
cannot become shell syntax, in our template or in a site's. A filter that makes new text (`join`, `trim`) returns
plain text, which is then quoted as one word; `| shquote` quotes explicitly and is not quoted twice.
"""

from __future__ import annotations

import traceback

import jinja2

from hpcctl.errors import HpcctlError
from hpcctl.jobspec.model import JobSpec
from hpcctl.render.directives import Verbatim, launch_for, sh_word
from hpcctl.resources import data_dir
from hpcctl.site.config import SiteConfig

BUILTIN_TEMPLATES = data_dir("templates")
TEMPLATE = "job.sh.j2"


def environment(site: SiteConfig) -> jinja2.Environment:
    builtin = jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES))
    search = [jinja2.FileSystemLoader(site.templates_dir)] if site.templates_dir else []
    loader = jinja2.ChoiceLoader([*search, builtin, jinja2.PrefixLoader({"hpcctl": builtin})])
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=False, finalize=quoted)
    env.filters["shquote"] = sh_word
    return env


def quoted(value) -> str:
    """What `{{ value }}` writes: Verbatim text as it is, every other value as one sh word."""
    return value if isinstance(value, Verbatim) else sh_word(value)


def _template_line(exc: jinja2.TemplateError) -> str:
    """FILE:LINE of the template line that failed: from a syntax error, or from the traceback Jinja rewrites."""
    if getattr(exc, "lineno", None):
        return f"{exc.filename or exc.name}:{exc.lineno}: "
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""


def render_job(job: JobSpec, site: SiteConfig) -> str:
    launch = launch_for(job, site)
    try:
        return environment(site).get_template(TEMPLATE).render(
            job=job, site=site, sbatch=launch.sbatch, environment=launch.environment, srun=launch.srun,
            command=launch.command, per_task_shell=launch.per_task_shell)
    except jinja2.TemplateError as exc:
        raise HpcctlError(f"cannot render job '{job.name}': {_template_line(exc)}{exc.message}",
                          f"fix the job template (search path: {site.templates_dir or ''} {BUILTIN_TEMPLATES})"
                          ) from None
