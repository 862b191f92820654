/*
 * hpcctl SPANK plugin: registers the --container-* options in sbatch, srun and salloc.
 * Decisions live in the Python core (hpcctl/plugin); this shim only registers options and, in the task, performs
 * the syscalls that must happen there.
 */
#include <slurm/spank.h>
#include <string.h>

SPANK_PLUGIN(hpcctl, 1);

static int opt_noop(int val, const char *optarg, int remote)
{
    (void)val;
    (void)optarg;
    (void)remote;
    return 0;
}

static struct spank_option options[] = {
    {"container-image", "[USER@][REGISTRY#]IMAGE[:TAG]|PATH",
     "[hpcctl] the container image to run the job's tasks in", 1, 0, opt_noop},
    {"container-mounts", "SRC:DST[:FLAGS][,SRC:DST...]", "[hpcctl] bind mount[s] inside the container", 1, 0,
     opt_noop},
    {"container-workdir", "PATH", "[hpcctl] working directory inside the container", 1, 0, opt_noop},
    {"container-name", "NAME[:MODE]", "[hpcctl] name the container, to reuse it in later steps of the job", 1, 0,
     opt_noop},
    SPANK_OPTIONS_TABLE_END
};

int slurm_spank_init(spank_t sp, int ac, char **av)
{
    (void)ac;
    (void)av;
    for (struct spank_option *opt = options; opt->name; opt++)
        if (spank_option_register(sp, opt) != ESPANK_SUCCESS)
            return -1;
    return 0;
}
