from hpcctl.plugin.hostlist import expand, this_node


def test_expand():
    assert expand("n[1-2]") == ["n1", "n2"]
    assert expand("gpu[01-03,7],login,x[1]y") == ["gpu01", "gpu02", "gpu03", "gpu7", "login", "x1y"]


def test_this_node():
    assert this_node({"SLURM_STEP_NODELIST": "n[1-2]"}, 1, "h") == "n2"
    assert this_node({"SLURMD_NODENAME": "n7", "SLURM_STEP_NODELIST": "n[1-2]"}, 0, "h") == "n7"
    assert this_node({}, 0, "h") == "h"
