"""Submitted runs: bundles on disk, submission of spec files, following jobs to their end."""
