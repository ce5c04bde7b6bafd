"""Bearer tokens and their scopes, for the gRPC service (SPEC §10).

A token file is either JSON:

    {"tokens": [{"token": "s3cret-pipeline", "scopes": ["write"], "name": "orders"},
                {"token": "s3cret-finance", "scopes": ["read", "admin"]}]}

(or a bare list of those objects), or lines of text:

    # token                scopes          name (optional)
    s3cret-pipeline        write           orders
    s3cret-finance         read,admin

Scopes are independent (`admin` does not imply `read`): a token gets exactly
the scopes listed, so a pipeline's token can write purchases without reading
balances. `read`: queries; `write`: purchases, refunds, redemptions, referrals
and member profiles; `admin`: the programme, expiry runs, adjustments and the
redemption estimate (Verify too, though it changes nothing).

Tokens are kept as SHA-256 digests, so a look-up compares digests, never the
secret itself character by character.
"""

import dataclasses
import hashlib
import json

from .headers import authorization_metadata, bearer_token  # noqa: F401 (re-exported)

SCOPE_READ = "read"
SCOPE_WRITE = "write"
SCOPE_ADMIN = "admin"
SCOPES = (SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN)

token_bytes_min = 16  # a bearer token is a secret: refuse short ones
token_bytes_max = 4096
tokens_max = 10_000


class TokenFileError(ValueError):
    """The token file is unreadable or malformed; the message says where."""


@dataclasses.dataclass(frozen=True)
class Principal:
    name: str  # for logs: the token's name, never the token
    scopes: frozenset


def _digest(token):
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenStore:
    def __init__(self, principals_by_digest):
        self._principals = dict(principals_by_digest)

    def __len__(self):
        return len(self._principals)

    @classmethod
    def from_mapping(cls, scopes_by_token):
        """{token: iterable of scopes} (names default to "token-1", "token-2", … in order)."""
        entries = [
            (token, list(scopes), f"token-{number}")
            for number, (token, scopes) in enumerate(scopes_by_token.items(), start=1)
        ]
        return cls._from_entries(entries, "mapping")

    @classmethod
    def from_file(cls, path):
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise TokenFileError(f"{path}: cannot read the token file ({error})") from None
        stripped = text.lstrip()
        if stripped.startswith(("{", "[")):
            return cls._from_entries(_json_entries(text, path), path)
        return cls._from_entries(_line_entries(text, path), path)

    @classmethod
    def _from_entries(cls, entries, source):
        if not entries:
            raise TokenFileError(f"{source}: no tokens")
        if len(entries) > tokens_max:
            raise TokenFileError(f"{source}: more than {tokens_max} tokens")
        principals = {}
        for token, scopes, name in entries:
            where = f"{source}: token {name!r}"
            if not isinstance(token, str) or not token_bytes_min <= len(token.encode("utf-8")) <= token_bytes_max:
                raise TokenFileError(f"{where}: a token is {token_bytes_min} to {token_bytes_max} bytes of text")
            if any(character.isspace() or ord(character) < 0x20 for character in token):
                raise TokenFileError(f"{where}: a token has no spaces or control characters")
            unknown = [scope for scope in scopes if scope not in SCOPES]
            if unknown or not scopes:
                raise TokenFileError(f"{where}: scopes must be some of {', '.join(SCOPES)} (got {scopes!r})")
            digest = _digest(token)
            if digest in principals:
                raise TokenFileError(f"{where}: the same token is listed twice")
            principals[digest] = Principal(name, frozenset(scopes))
        return cls(principals)

    def authenticate(self, metadata):
        """The Principal of the call's bearer token, or None (missing or unknown token)."""
        token = bearer_token(metadata)
        if token is None:
            return None
        return self._principals.get(_digest(token))


def _json_entries(text, path):
    try:
        document = json.loads(text)
    except ValueError as error:
        raise TokenFileError(f"{path}: not valid JSON ({error})") from None
    items = document.get("tokens") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise TokenFileError(f'{path}: expected {{"tokens": [...]}} or a list of tokens')
    entries = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or set(item) - {"token", "scopes", "name"}:
            raise TokenFileError(f'{path}: token {number}: expected {{"token", "scopes", "name"}}')
        scopes = item.get("scopes")
        if isinstance(scopes, str):
            scopes = [scope.strip() for scope in scopes.split(",")]
        if not isinstance(scopes, list):
            raise TokenFileError(f"{path}: token {number}: scopes must be a list")
        entries.append((item.get("token"), scopes, str(item.get("name") or f"token-{number}")))
    return entries


def _line_entries(text, path):
    entries = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):  # whole-line comments only: a token may hold '#'
            continue
        parts = line.split()
        if len(parts) not in (2, 3):
            raise TokenFileError(f"{path}:{line_number}: expected `token scope[,scope…] [name]`")
        scopes = [scope.strip() for scope in parts[1].split(",") if scope.strip()]
        name = parts[2] if len(parts) == 3 else f"line-{line_number}"
        entries.append((parts[0], scopes, name))
    return entries
