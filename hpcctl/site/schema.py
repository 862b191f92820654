"""JSON Schema of a site config: what an admin may write in site-configs/*.yaml.

`hpcctl site schema` prints it; editors use it for completion. Loading a config validates against it first
(hpcctl.site.config), so the rest of the code trusts the typed objects it gets.
"""

SIZE = {"type": ["string", "integer"], "pattern": r"\d+(\.\d+)?\s*([KMGT]i?B?)?",
        "x-format": "a size such as 20GiB, 500M or a byte count"}
DURATION = {"type": "string", "pattern": r"(\d+-)?\d{1,2}(:\d{2}){0,2}|UNLIMITED",
            "x-format": "a Slurm time such as 30, 01:00:00 or 2-00:00:00"}
ABS_PATH = {"type": "string", "pattern": r"/.*", "x-format": "an absolute path",
            "x-hint": "write an absolute path starting with /"}
STR_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}}
ENV_MAP = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}

SITE_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://hpcctl.dev/schema/site-config.json",
    "title": "hpcctl site config",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "cluster"],
    "$defs": {
        "mount": {
            "type": "object",
            "additionalProperties": False,
            "required": ["source"],
            "description": "a bind mount from the host into every container",
            "properties": {
                "source": ABS_PATH,
                "target": ABS_PATH,
                "flags": {"type": "array", "items": {"enum": ["ro", "rw", "nosuid", "nodev", "noexec", "rbind", "bind",
                                                              "private", "rprivate", "slave", "rslave", "shared",
                                                              "rshared", "unbindable", "runbindable", "file",
                                                              "dir"]}},
                "optional": {"type": "boolean", "description": "skip silently when the source is missing"},
                "why": {"type": "string", "description": "shown by `hpcctl site explain`"},
            },
        },
        "mpi_flavour": {
            "type": "object",
            "additionalProperties": False,
            "required": ["libraries"],
            "properties": {
                "description": {"type": "string"},
                "libraries": {**STR_LIST, "description": "host MPI libraries (sonames or absolute paths) "
                                                         "bound over the container's"},
                "dependencies": {**STR_LIST, "description": "host libraries the MPI needs, bound into /usr/lib"},
                "abi_check": {"enum": ["major", "full", "strict", "none"], "default": "major"},
                "binds": {"type": "array", "items": {"$ref": "#/$defs/mount"}},
                "env": ENV_MAP,
                "pmix": {"type": "boolean", "default": True,
                         "description": "bind the step's PMIx server and Slurm spool directories"},
            },
        },
        "partition": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "default": {"type": "boolean"},
                "max_time": DURATION,
                "max_nodes": {"type": "integer", "minimum": 1},
                "max_gpus_per_node": {"type": "integer", "minimum": 0},
                "gpu_types": STR_LIST,
                "description": {"type": "string"},
            },
        },
    },
    "properties": {
        "version": {"enum": [1], "x-hint": "this hpcctl reads site config version 1"},
        "cluster": {"type": "string", "minLength": 1, "description": "Slurm ClusterName this config is for"},
        "description": {"type": "string"},
        "slurm": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "config_dir": ABS_PATH,
                "spool_dir": {**ABS_PATH, "description": "SlurmdSpoolDir; %n is the node name"},
                "tmpfs": {**ABS_PATH, "description": "TmpFS; %n is the node name"},
                "munge_socket_dir": ABS_PATH,
            },
        },
        "cache": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "root": {**ABS_PATH, "description": "node-local directory for layers and squashfs images; %n is "
                                                    "the node name (one cache per node where a host runs several)"},
                "high_watermark": SIZE,
                "low_watermark": SIZE,
                "compression": {"enum": ["none", "lz4", "zstd", "gzip", "lzo", "xz"]},
                "shared": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["root", "owner"],
                    "description": "cluster-wide image store on a shared file system: each image is converted "
                                   "once for the whole cluster",
                    "properties": {
                        "root": {**ABS_PATH, "description": "a directory every node mounts at the same path"},
                        "mode": {"enum": ["mount", "copy"], "default": "mount",
                                 "description": "mount: jobs loop-mount the shared file; copy: each node copies "
                                                "it into its own cache first"},
                        "owner": {"type": "string", "pattern": r"[a-z_][a-z0-9_.-]*",
                                  "x-format": "a user name", "x-hint": "name the store's service account",
                                  "description": "the service account that owns the store and does every read and "
                                                 "write there (never root: shared file systems squash root)"},
                    },
                },
            },
        },
        "registries": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "default": {"type": "string", "description": "registry for short names like `ubuntu`"},
                "insecure": {**STR_LIST, "description": "host[:port] reached over plain HTTP"},
                "mirrors": {"type": "object", "additionalProperties": STR_LIST},
                "netrc": {"type": "string", "description": "enroot-style credentials file; ~ is the user's home"},
                "docker_config": {"type": "boolean", "description": "read ~/.docker/config.json and helpers"},
                "timeout_s": {"type": "number", "minimum": 1},
                "retries": {"type": "integer", "minimum": 0},
            },
        },
        "mounts": {"type": "array", "items": {"$ref": "#/$defs/mount"}},
        "user_mounts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "allow": {"type": "boolean"},
                "deny_prefixes": {**STR_LIST, "description": "host paths users may never mount"},
            },
        },
        "environment": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"set": ENV_MAP, "prepend": ENV_MAP, "append": ENV_MAP, "unset": STR_LIST},
        },
        "mpi": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "default": {"type": ["string", "null"]},
                "flavours": {"type": "object", "additionalProperties": {"$ref": "#/$defs/mpi_flavour"}},
            },
        },
        "gpu": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "driver_libraries": {**STR_LIST, "description": "library name prefixes looked up in ldconfig -p"},
                "binaries": STR_LIST,
                "control_devices": {"type": "array", "items": ABS_PATH},
                "device_pattern": {"type": "string", "pattern": r"/.*\{index\}.*",
                                   "x-format": "a device path with {index}, e.g. /dev/nvidia{index}"},
                "cdi_spec": ABS_PATH,
                "gres_conf": {**ABS_PATH, "description": "Slurm gres.conf whose File= lines map a GRES index to "
                                                         "its device; without it device_pattern is used"},
                "ldconfig": ABS_PATH,
            },
        },
        "partitions": {"type": "object", "additionalProperties": {"$ref": "#/$defs/partition"}},
        "plugin": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "runtime_dir": ABS_PATH,
                "exec": ABS_PATH,
                "mount_home": {"type": "boolean"},
                "entrypoint": {"type": "boolean"},
                "writable": {"type": "boolean"},
                "host_files": {"type": "array", "items": ABS_PATH,
                               "description": "host files bound read-only at the same path in every container "
                                              "(default: /etc/hosts, /etc/resolv.conf)"},
            },
        },
        "templates": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"dir": ABS_PATH},
        },
    },
}
