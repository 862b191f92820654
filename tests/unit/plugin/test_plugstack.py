"""plugstack.conf KEY=VALUE arguments as the site's plugin defaults on a node."""

import pytest

from hpcctl.errors import HpcctlError
from hpcctl.plugin import plugstack
from hpcctl.site.config import load_site

SITE = load_site("site-configs/sandbox.yaml")


def test_arguments_override_the_site_configs_plugin_section():
    site = plugstack.apply(SITE, ["execute_entrypoint=1", "mount_home=0", "runtime_path=/run/x"])
    assert (site.plugin.entrypoint, site.plugin.mount_home, site.plugin.runtime_dir) == (True, False, "/run/x")
    assert plugstack.apply(SITE, []) is SITE


@pytest.mark.parametrize("argument", ["execute_entrypoint=yes", "runtime_path=relative", "container_scope=job"])
def test_a_bad_argument_names_itself_and_the_known_ones(argument):
    with pytest.raises(HpcctlError, match=f"plugstack.conf argument '{argument}' is not valid"):
        plugstack.apply(SITE, [argument])
