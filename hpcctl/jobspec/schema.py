"""JSON Schema of a job spec: one job (a mapping) or a pipeline (a list of jobs with names).

`hpcctl schema` prints it for editors; `hpcctl.jobspec.load` validates every spec against it first, then checks
what a schema cannot say (cross-field rules, pipeline names, the site's limits).

Patterns are anchored (``^(?:...)$``): standard validators match a pattern anywhere in a value, hpcctl's validator
matches the whole value; anchored, both accept the same values.

Keywords that apply to one JSON type only (``properties`` to objects, ``items`` to arrays, ``pattern`` to strings)
let a single schema accept both forms, for this project's validator and for standard JSON Schema tools alike.
"""

from hpcctl.site.schema import DURATION, SIZE


def whole(pattern: str) -> str:
    return f"^(?:{pattern})$"


MAX_COUNT = 2**31 - 1  # nodes, tasks, CPUs, GPUs, job ids and array indices: what sbatch reads into a C int
COUNT = {"type": "integer", "minimum": 1, "maximum": MAX_COUNT}
NAME = {"type": "string", "pattern": whole(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"),
        "x-format": "a job name of letters, digits, '_', '.' and '-' (at most 64 characters)"}
ENV_NAME = {"type": "string", "pattern": whole(r"[A-Za-z_][A-Za-z0-9_]*"),
            "x-format": "an environment variable name",
            "x-hint": "use letters, digits and '_', not starting with a digit"}
DEP_TARGETS = {"type": "array", "minItems": 1,
               "items": {"type": ["integer", "string"], "minimum": 1, "maximum": MAX_COUNT,
                         "pattern": whole(r"[A-Za-z0-9][A-Za-z0-9_.-]*"),
                         "x-format": "a job id or the name of another job in this pipeline"}}
PATH_PART = r"/[^:,]*"

JOB_PROPERTIES: dict = {
    "name": {**NAME, "description": "Slurm job name; pipeline dependencies refer to it"},
    "image": {"type": "string", "minLength": 1,
              "description": "container image, e.g. 127.0.0.1:5000/hpcctl/busybox:latest; "
                             "without it the job runs on the host"},
    "command": {"type": ["string", "array"], "minLength": 1, "minItems": 1, "items": {"type": "string"},
                "description": "what each task runs: a shell line, or an argv list"},
    "script": {"type": "string", "minLength": 1,
               "description": "a multi-line shell script (sh syntax), run like `command`"},
    "resources": {"$ref": "#/$defs/resources"},
    "mpi": {"$ref": "#/$defs/mpi"},
    "container": {"$ref": "#/$defs/container"},
    "environment": {"type": "object", "propertyNames": ENV_NAME,
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                    "description": "variables set for the job's tasks, inside the container too"},
    "array": {"type": ["string", "integer"], "minimum": 0, "maximum": MAX_COUNT,
              "pattern": whole(r"\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?"),
              "x-format": "a Slurm array range such as 0-9, 1,3,5 or 0-9%2",
              "description": "Slurm job array; %N limits how many tasks run at once"},
    "dependencies": {"$ref": "#/$defs/dependencies"},
    "outputs": {"$ref": "#/$defs/outputs"},
    "sbatch_args": {"type": "array",
                    "items": {"type": "string", "pattern": whole(r"--?[A-Za-z].*"),
                              "x-format": "an sbatch option such as --exclusive"},
                    "description": "extra sbatch options, written as #SBATCH lines"},
}

JOB_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://hpcctl.dev/schema/job-spec.json",
    "title": "hpcctl job spec",
    "description": "One job, or a list of jobs (a pipeline) whose dependencies name each other.",
    "type": ["object", "array"],
    "additionalProperties": False,
    "required": ["name"],
    "properties": JOB_PROPERTIES,
    "minItems": 1,
    "items": {"$ref": "#/$defs/job"},
    "$defs": {
        "job": {"type": "object", "additionalProperties": False, "required": ["name"], "properties": JOB_PROPERTIES},
        "resources": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "nodes": COUNT,
                "tasks_per_node": COUNT,
                "cpus_per_task": COUNT,
                "memory": {**SIZE, "pattern": whole(SIZE["pattern"]), "minimum": 0,
                           "description": "memory per node, e.g. 4G; 0 is all of a node's memory"},
                "gpus": {**COUNT, "minimum": 0, "description": "GPUs per node"},
                "gpu_type": {"type": "string", "minLength": 1, "description": "GRES type, e.g. a100"},
                "time": {**DURATION, "pattern": whole(DURATION["pattern"]),
                         "description": "time limit, e.g. 00:30:00"},
                "partition": {"type": "string", "minLength": 1},
                "account": {"type": "string", "minLength": 1},
                "qos": {"type": "string", "minLength": 1},
            },
        },
        "mpi": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "flavour": {"type": "string", "minLength": 1,
                            "description": "host MPI injected into the container (a site mpi.flavours name)"},
                "pmi": {"enum": ["pmix", "pmi2", "none"], "default": "pmix", "description": "srun --mpi plugin"},
            },
        },
        "container": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "mounts": {"type": "array", "items": {"$ref": "#/$defs/mount"}},
                "workdir": {"type": "string", "pattern": whole(r"/.*"), "x-format": "an absolute path"},
                "env": {"type": "array", "items": ENV_NAME,
                        "description": "host variables whose values win over the image's"},
                "writable": {"type": "boolean"},
                "entrypoint": {"type": "boolean", "description": "run the image's ENTRYPOINT first"},
            },
        },
        "mount": {
            "type": ["string", "object"],
            "pattern": whole(rf"{PATH_PART}(:{PATH_PART})?(:(ro|rw))?"),
            "x-format": "SOURCE[:TARGET][:ro|rw] with absolute paths",
            "additionalProperties": False,
            "required": ["source"],
            "properties": {
                "source": {"type": "string", "pattern": whole(PATH_PART), "x-format": "an absolute path"},
                "target": {"type": "string", "pattern": whole(PATH_PART), "x-format": "an absolute path"},
                "readonly": {"type": "boolean"},
            },
        },
        "dependencies": {
            "type": "object",
            "additionalProperties": False,
            "properties": {kind: DEP_TARGETS for kind in ("after", "afterok", "afterany", "afternotok", "aftercorr")},
        },
        "outputs": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "stdout": {"type": "string", "minLength": 1,
                           "description": "Slurm filename pattern (%j, %A, %a, %x); default NAME-%j.out"},
                "stderr": {"type": "string", "minLength": 1, "description": "default: together with stdout"},
            },
        },
    },
}
