"""`hpcctl submit|render|status|logs|cancel|list|schema|config|completion`: job specs from YAML to finished jobs."""

from __future__ import annotations

import argparse
import json
import os
import sys

from hpcctl.cli.output import print_json, print_table

JOB_HELP = "job id (123), array task (123_4) or run bundle directory"


def register(sub) -> None:
    def command(name: str, help: str, func, description: str, site: bool = False) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, description=description)
        if site:
            parser.add_argument("--site", metavar="NAME|FILE", default=argparse.SUPPRESS,
                                help="site config (default: $HPCCTL_SITE, then `site:` in your config, then "
                                     "/etc/hpcctl/site.yaml, then the one named after Slurm's ClusterName)")
        parser.set_defaults(func=func)
        return parser

    submit = command("submit", "validate, render and submit a job spec", run_submit,
                     "Check SPEC against the schema and the site's limits (every problem at once, with file:line), "
                     "render each job's batch script, submit it with sbatch (a pipeline: dependencies first) and "
                     "keep a run bundle per job. Prints the job ids. SBATCH_* variables from your shell are left "
                     "out unless --keep-sbatch-env. Example: hpcctl submit examples/hello.yaml --wait", site=True)
    submit.add_argument("file", metavar="SPEC", help="job spec (YAML): one job, or a list of jobs for a pipeline")
    out = submit.add_mutually_exclusive_group()
    out.add_argument("--parsable", action="store_true",
                     help="print only JOBID[;CLUSTER], one line per job, e.g. for JID=$(hpcctl submit --parsable ...)")
    out.add_argument("--json", action="store_true", help="print the submitted jobs as JSON")
    mode = submit.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="print each batch script and its sbatch command; submit nothing")
    mode.add_argument("--test-only", action="store_true",
                      help="ask Slurm whether and when the jobs would start (sbatch --test-only); queue nothing")
    mode.add_argument("--wait", action="store_true",
                      help="follow the jobs to their end and print their output (on stderr with --parsable or "
                           "--json); exit 1 if one did not complete")
    submit.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="with --wait: stop waiting after this long (the jobs keep running)")
    submit.add_argument("--keep-sbatch-env", action="store_true",
                        help="let inherited SBATCH_* variables change the job (they are warned about either way)")

    render = command("render", "print the batch script(s) a job spec becomes", run_render,
                     "Check SPEC like `submit` does and print the batch script of each job, exactly as it would "
                     "be submitted. Example: hpcctl render examples/pipeline.yaml --job train", site=True)
    render.add_argument("file", metavar="SPEC", help="job spec (YAML)")
    render.add_argument("--job", metavar="NAME", help="only this job of a pipeline")

    status = command("status", "show the state of jobs", run_status,
                     "State, exit code, nodes and pending reason of jobs, one line per job or array task. Works "
                     "without accounting: squeue first, then scontrol, then sacct where slurmdbd answers.")
    status.add_argument("jobs", nargs="+", metavar="JOB", help=JOB_HELP)
    status.add_argument("--json", action="store_true", help="print as JSON")

    logs = command("logs", "print a job's output", run_logs,
                   "Print the output file of a job, or of every task of an array; found through Slurm while it "
                   "knows the job, else through the run bundle.")
    logs.add_argument("job", metavar="JOB", help=JOB_HELP)
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new output until the job ends")

    cancel = command("cancel", "cancel jobs", run_cancel, "Cancel jobs, single array tasks or the job of a run bundle "
                                                          "(scancel).")
    cancel.add_argument("jobs", nargs="+", metavar="JOB", help=JOB_HELP)

    listing = command("list", "list your recent submissions and their states", run_list,
                      "Your run bundles, newest first, with the state Slurm reports now ('gone' once Slurm has "
                      "forgotten a job and there is no accounting).")
    listing.add_argument("--last", type=int, default=20, metavar="N", help="how many (default 20)")
    listing.add_argument("--json", action="store_true", help="print as JSON")

    command("schema", "print the job spec JSON Schema", run_schema,
            "Print the JSON Schema of job specs, for editor completion and CI linting: "
            "hpcctl schema > ~/.config/hpcctl/job-spec.schema.json")

    config = command("config", "show effective settings and where each comes from", run_config_show,
                     "Print the site config in force, resource defaults, the run bundle directory and the Slurm "
                     "backend, each with where it came from (command line, environment, which file and line).",
                     site=True)
    config.add_argument("action", choices=["show"], help="show: print the effective settings")
    config.add_argument("--json", action="store_true", help="print as JSON")

    completion = command("completion", "print a shell completion script", run_completion,
                         "Print a bash completion script: `source <(hpcctl completion bash)`, or save it as "
                         "/etc/bash_completion.d/hpcctl.")
    completion.add_argument("shell", choices=["bash"], help="the shell to complete in")


def _site_and_defaults(args):
    from hpcctl.site.config import load_site
    from hpcctl.site.select import effective, resource_defaults

    settings = effective(getattr(args, "site", None))
    return load_site(settings["site_file"].value), resource_defaults(settings)


def run_submit(args) -> int:
    from hpcctl.errors import HpcctlError
    from hpcctl.jobspec.load import load_job_file
    from hpcctl.runs import follow
    from hpcctl.runs.submit import dry_run_commands, sbatch_environment, submit_file
    from hpcctl.slurm.backend import select_backend

    if args.timeout is not None and not args.wait:
        raise HpcctlError("--timeout applies only while waiting", "add --wait, or drop --timeout")
    site, defaults = _site_and_defaults(args)
    jobs = load_job_file(args.file, defaults, site)
    if args.dry_run:
        from hpcctl.render.script import render_job

        sbatch_environment(args.keep_sbatch_env)
        for job, cmd in zip(jobs.jobs, dry_run_commands(jobs)):
            print(f"# {cmd}")
            print(render_job(job, site))
        return 0
    backend = select_backend()
    done = submit_file(jobs, site, backend, keep_sbatch_env=args.keep_sbatch_env, test_only=args.test_only)
    if args.test_only:
        for item in done:
            print(f"{item.job.name}: {item.message}")
        return 0
    if args.json:
        print_json([d.to_dict() for d in done])
    elif args.parsable:
        for d in done:
            print(f"{d.job_id};{d.cluster}" if d.cluster else d.job_id)
    else:
        for d in done:
            print(f"Submitted job {d.job_id} ({d.job.name}); run bundle {d.bundle}")
    if not args.wait:
        return 0
    targets = follow.resolve([d.job_id for d in done])
    found = follow.wait_for(backend, [t.ref for t in targets], args.timeout)
    follow.print_outputs(targets, found, out=sys.stderr if args.json or args.parsable else sys.stdout)
    return _exit_for(found)


def _exit_for(found: dict) -> int:
    bad = [j for jobs in found.values() for j in jobs if j.state != "COMPLETED"]
    for job in bad:
        print(f"hpcctl: job {job.job_id} ({job.name}) ended {job.state}"
              + (f" ({job.reason})" if job.reason and job.reason != "None" else "")
              + f", exit {job.exit_code}", file=sys.stderr)
    return 1 if bad else 0


def run_render(args) -> int:
    from hpcctl.errors import HpcctlError
    from hpcctl.jobspec.load import load_job_file
    from hpcctl.render.script import render_job

    site, defaults = _site_and_defaults(args)
    jobs = load_job_file(args.file, defaults, site)
    selected = [j for j in jobs.jobs if args.job in (None, j.name)]
    if not selected:
        raise HpcctlError(f"no job named '{args.job}' in {args.file}",
                          f"use one of: {', '.join(j.name for j in jobs.jobs)}")
    for i, job in enumerate(selected):
        if len(selected) > 1:
            print(("\n" if i else "") + f"# ===== job {job.name} =====")
        sys.stdout.write(render_job(job, site))
    return 0


def run_status(args) -> int:
    from hpcctl.runs import follow
    from hpcctl.slurm.backend import select_backend

    targets = follow.resolve(args.jobs)
    found = select_backend().status([t.ref for t in targets])
    if args.json:
        print_json({ref: [j.to_dict() for j in jobs] for ref, jobs in found.items()})
        return 0
    rows = [[j.job_id, j.name, j.state, j.exit_code, j.nodes, j.reason if j.reason != "None" else ""]
            for jobs in found.values() for j in jobs]
    rows += [[ref, "", "UNKNOWN", "", "", "no longer known to Slurm (no accounting)"]
             for ref, jobs in found.items() if not jobs]
    print_table(["JOB", "NAME", "STATE", "EXIT", "NODES", "REASON"], rows)
    return 0


def run_logs(args) -> int:
    from hpcctl.errors import HpcctlError
    from hpcctl.runs import follow
    from hpcctl.slurm.backend import select_backend

    targets = follow.resolve([args.job])
    backend = select_backend()
    if args.follow:
        follow.tail(backend, targets)
        return 0
    found = backend.status([t.ref for t in targets])
    if not any(follow.output_paths(t, found.get(t.ref, [])) for t in targets):
        raise HpcctlError(f"no output file known for job {args.job}",
                          "pass the run bundle (see `hpcctl list`), or look in the job's working directory")
    follow.print_outputs(targets, found)
    return 0


def run_cancel(args) -> int:
    from hpcctl.runs import follow
    from hpcctl.slurm.backend import select_backend

    refs = [t.ref for t in follow.resolve(args.jobs)]
    select_backend().cancel(refs)
    print(f"Cancelled {' '.join(refs)}")
    return 0


def run_list(args) -> int:
    from hpcctl.runs.listing import recent
    from hpcctl.slurm.backend import select_backend

    rows = recent(select_backend(), args.last)
    if args.json:
        print_json(rows)
        return 0
    print_table(["JOB", "NAME", "STATE", "SUBMITTED", "BUNDLE"],
                [[r["job_id"], r["name"], r["state"], r["submitted_at"], r["bundle"]] for r in rows])
    return 0


def run_schema(args) -> int:
    from hpcctl.jobspec.schema import JOB_SCHEMA

    print(json.dumps(JOB_SCHEMA, indent=2))
    return 0


def run_config_show(args) -> int:
    from hpcctl.runs.bundle import runs_dir
    from hpcctl.site.config import load_site
    from hpcctl.site.select import effective, slurm_cluster_name
    from hpcctl.slurm.backend import select_backend

    settings = effective(getattr(args, "site", None))
    rows = [[key, s.value, s.origin] for key, s in settings.items()]
    rows.append(["cluster", load_site(settings["site_file"].value).cluster, "cluster: in the site config"])
    slurm = slurm_cluster_name()
    if slurm:
        rows.append(["slurm_cluster", slurm[0], f"ClusterName in {slurm[1]}"])
    rows.append(["runs_dir", str(runs_dir()), "XDG_DATA_HOME" if "XDG_DATA_HOME" in os.environ
                 else "default (~/.local/share)"])
    rows.append(["slurm_backend", select_backend().name, "pyslurm when a build for this Slurm imports"])
    if args.json:
        print_json({key: {"value": value, "origin": origin} for key, value, origin in rows})
    else:
        print_table(["SETTING", "VALUE", "FROM"], rows)
    return 0


def run_completion(args) -> int:
    from hpcctl.cli import build_parser
    from hpcctl.cli.completion import bash_script

    print(bash_script(build_parser()))
    return 0
