"""Environment order: image ENV, then site rules, then --container-env; Slurm's variables always survive."""

from hpcctl.container.environment import compose, image_env
from hpcctl.site.config import EnvRules


def test_order_and_protection():
    image = image_env({"Env": ["PATH=/img/bin", "SLURM_JOB_ID=9", "CUDA_VISIBLE_DEVICES=all", "PMIX_RANK=3",
                               "LANG=C", "KEEP=image"]})
    site = EnvRules(set={"SITE": "1", "KEEP": "site"}, prepend={"PATH": "/site/bin"}, unset=("LANG",))
    ops = compose(image, site, keep=["KEEP"])
    names = [(op.op, op.name) for op in ops]
    assert ("set", "PATH") in names and names.index(("set", "PATH")) < names.index(("prepend", "PATH"))
    assert not any(n in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES", "PMIX_RANK") for _, n in names)
    assert not any(n == "KEEP" for _, n in names)
    assert names.index(("set", "LANG")) < len(names) - 1 - names[::-1].index(("unset", "LANG"))  # the site's


def test_host_locale_is_dropped_before_the_image_sets_its_own_unless_kept():
    ops = compose(image_env({"Env": ["LANG=C.UTF-8"]}), EnvRules(), keep=["LC_ALL"])
    names = [(op.op, op.name) for op in ops]
    assert names[:3] == [("unset", "LANG"), ("unset", "LANGUAGE"), ("set", "LANG")]
    assert ("unset", "LC_ALL") not in names
