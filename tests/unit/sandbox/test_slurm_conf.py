"""The sandbox's Slurm config: N nodes on one host; n1 and n2 (partition debug) with two fake GPUs each."""

from hpcctl.sandbox import slurm_conf
from hpcctl.site.nodes import nodes_on_host


def test_nodes_share_the_host_on_their_own_ports():
    text = slurm_conf.slurm_conf("box", 2)
    assert "NodeName=n[1-2] NodeHostname=box NodeAddr=127.0.0.1 Port=[17001-17002]" in text
    assert "Gres=gpu:fake:2" in text
    assert "TmpFS=/tmp/slurmtmp_%n" in text
    assert "PartitionName=debug Nodes=n[1-2] Default=YES" in text
    assert "PartitionName=scale Nodes=n[1-2] " in text


def test_sixteen_nodes_keep_debug_on_the_gpu_nodes_and_put_all_in_scale():
    text = slurm_conf.slurm_conf("box", 16)
    assert "NodeName=n[3-16] NodeHostname=box NodeAddr=127.0.0.1 Port=[17003-17016] CPUs=4 RealMemory=8000 " \
           "State=UNKNOWN" in text
    assert "PartitionName=debug Nodes=n[1-2] Default=YES" in text
    assert "PartitionName=scale Nodes=n[1-16] " in text
    assert nodes_on_host(text, "box") == [f"n{i}" for i in range(1, 17)]


def test_each_node_gets_its_own_fake_gpus():
    lines = slurm_conf.gres_conf().splitlines()
    assert "NodeName=n1 Name=gpu Type=fake File=/dev/fakegpu/nvidia[0-1]" in lines
    assert "NodeName=n2 Name=gpu Type=fake File=/dev/fakegpu/nvidia[2-3]" in lines


def test_write_if_changed_is_idempotent(tmp_path):
    path = tmp_path / "a.conf"
    assert slurm_conf.write_if_changed(path, "x=1\n")
    assert not slurm_conf.write_if_changed(path, "x=1\n")
    assert slurm_conf.write_if_changed(path, "x=2\n")
    assert path.read_text() == "x=2\n"
