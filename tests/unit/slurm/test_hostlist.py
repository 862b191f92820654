from hpcctl.slurm.hostlist import expand


def test_expand():
    assert expand("n[1-2]") == ["n1", "n2"]
    assert expand("gpu[01-03,7],login,x[1]y") == ["gpu01", "gpu02", "gpu03", "gpu7", "login", "x1y"]
    assert expand("/dev/nvidia[0-1]") == ["/dev/nvidia0", "/dev/nvidia1"]
