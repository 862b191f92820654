"""Errors of the image pipeline; each is one line a user can act on (see hpcctl.errors.HpcctlError)."""

from hpcctl.errors import HpcctlError


class BadReference(HpcctlError):
    """An image reference that does not parse."""


class RegistryUnreachable(HpcctlError):
    """No answer from the registry (and its mirrors) after the configured retries."""


class RegistryError(HpcctlError):
    """The registry answered, but with something we cannot use (HTTP 5xx after retries, bad manifest)."""


class AuthDenied(HpcctlError):
    """The registry refused the user's credentials, or needs credentials the user does not have."""


class NotFound(HpcctlError):
    """The repository, tag, digest or local file does not exist."""


class NoSpace(HpcctlError):
    """The image cache's disk is too full for this image."""


class DigestMismatch(HpcctlError):
    """A blob or manifest does not hash to the digest that names it."""


class UnsafeLayer(HpcctlError):
    """A layer tarball tries to write outside the image or through a link; the image is refused."""


class LockBusy(HpcctlError):
    """A lock of the image cache stayed held past its bound: names the lock, its holder and what to do."""
