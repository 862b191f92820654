"""Where injected files land inside the container."""

LIBDIR = "/.hpcctl/lib"  # host libraries with no counterpart in the image; prepended to LD_LIBRARY_PATH
BINDIR = "/usr/bin"  # host utilities such as nvidia-smi
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # where host utilities are looked up
REMAP_ROOT_APT_CONF = "/.hpcctl/apt-remap-root.conf"  # APT_CONFIG under --container-remap-root
