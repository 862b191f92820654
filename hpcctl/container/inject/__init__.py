"""What a step's container gets from the host: GPU driver stack and MPI, decided from the site config.

``plan.plan_injections`` is the entry point the step builder (hpcctl.container.build) calls; its result goes into
the step's MountPlan. Pure decisions: it reads the host and the image, and changes nothing.
"""
