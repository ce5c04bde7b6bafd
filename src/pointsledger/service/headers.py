"""Call metadata that the client writes and the server reads: one definition for both sides.

gRPC metadata keys are lower case ASCII.
"""

AUTHORIZATION_KEY = "authorization"
BEARER_PREFIX = "bearer "  # compared case-insensitively, as HTTP does
FIELD_METADATA_KEY = "pointsledger-field"  # trailer: the request field an INVALID_ARGUMENT names


def authorization_metadata(token):
    """The metadata entry a client sends with each call."""
    return (AUTHORIZATION_KEY, "Bearer " + token)


def bearer_token(metadata):
    """The token of an `authorization: Bearer …` metadata entry, or None."""
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY and isinstance(value, str) and value[:7].lower() == BEARER_PREFIX:
            token = value[7:].strip()
            return token or None
    return None
