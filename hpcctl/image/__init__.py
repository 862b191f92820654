"""Image pipeline: OCI references -> registry -> content-addressed layers -> one squashfs per image in a node cache.

Callers use `hpcctl.image.api` (resolve, ensure, in_use); the other modules each do one step.
"""
