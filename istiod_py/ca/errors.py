"""Errors the CA raises; the gRPC layer maps each family to one status code."""

from __future__ import annotations


class CAError(Exception):
    """Base class for every error the CA reports to a caller."""


class AuthenticationError(CAError):
    """The caller could not be authenticated (gRPC UNAUTHENTICATED)."""


class PermissionDeniedError(CAError):
    """The caller is authenticated but may not get the requested identity (PERMISSION_DENIED)."""


class InvalidRequestError(CAError):
    """The request itself is malformed (INVALID_ARGUMENT)."""


class CSRParseError(InvalidRequestError):
    """The CSR is not a parseable, well-signed PKCS#10 request with an acceptable key."""


class InvalidValidityError(InvalidRequestError):
    """The requested certificate lifetime is not acceptable."""


class CAConfigError(CAError):
    """The CA's own key material (root directory or plug-in cacerts) is missing or inconsistent."""
