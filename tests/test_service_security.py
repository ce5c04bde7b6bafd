"""Security of the gRPC service (SPEC §10): bearer tokens with scopes, TLS, mutual TLS,
and the loopback-only rule without tokens.

A token with the wrong scope gets PERMISSION_DENIED and the store does not change
by a single byte; a missing or unknown token gets UNAUTHENTICATED. Certificates are
made here with `cryptography` (a CA, a server certificate for 127.0.0.1 and
localhost, client certificates), so nothing leaves this machine.
"""

import datetime
import ipaddress
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

import pointsledger
from pointsledger import Ledger
from pointsledger.auth import TokenFileError, TokenStore, bearer_token
from pointsledger.client import LedgerClient, PermissionDenied, Unauthenticated, Unavailable
from pointsledger.service import BackgroundServer, TlsConfig, check_bind_policy, create_server
from support import T_2026_03_15, dump_ledger, example_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z

READ_TOKEN = "read-token-0123456789"
WRITE_TOKEN = "write-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"
ALL_TOKEN = "all-scopes-token-0123456789"
TOKENS = {READ_TOKEN: ["read"], WRITE_TOKEN: ["write"], ADMIN_TOKEN: ["admin"],
          ALL_TOKEN: ["read", "write", "admin"]}


@pytest.fixture
def ledger(tmp_path, engine_name):
    opened = Ledger(tmp_path / "ledger", engine=engine_name)
    opened.set_program(example_program())
    opened.purchase("o-1", "m-1", 12_345, "grocery", T)  # 123 points, seq 1
    opened.register_referral("ref-0", "m-1", "m-0", T)
    opened.set_member_profile("m-1", "03-20")
    opened.set_redemption_estimate("e-0", T, "0.9")
    yield opened
    opened.close()


@pytest.fixture
def secured(ledger):
    with BackgroundServer(ledger, tokens=TOKENS) as background:
        yield f"127.0.0.1:{background.port}"


# One call per RPC, with the scope it needs. Each would change or read the store if allowed.
CALLS = {
    "RecordPurchase": ("write", lambda client: client.record_purchase("o-2", "m-1", 10_000, "electronics", T)),
    "IngestPurchases": ("write", lambda client: list(client.ingest(
        [(["o-3"], ["m-1"], [100], ["grocery"], [T])]))),
    "Refund": ("write", lambda client: client.refund("r-1", "o-1", 100, T)),
    "Redeem": ("write", lambda client: client.redeem("x-1", "m-1", 10, T)),
    "Adjust": ("admin", lambda client: client.adjust("a-1", "m-1", 5, "goodwill", T)),
    "SetProgram": ("admin", lambda client: client.set_program(example_program(effective_from=T))),
    "RunExpiry": ("admin", lambda client: client.run_expiry(as_of_s=T)),
    "GetBalance": ("read", lambda client: client.balance("m-1")),
    "GetBalances": ("read", lambda client: client.balances(["m-1"])),
    "ListEntries": ("read", lambda client: client.history("m-1")),
    "ReadJournal": ("read", lambda client: list(client.journal())),
    "GetProgram": ("read", lambda client: client.get_program()),
    "GetLiability": ("read", lambda client: client.liability()),
    "GetRollforward": ("read", lambda client: client.rollforward(1_767_225_600, 1_798_761_600)),
    "Verify": ("admin", lambda client: client.verify()),
    "RegisterReferral": ("write", lambda client: client.register_referral("ref-1", "m-1", "m-2", T)),
    "GetReferral": ("read", lambda client: client.get_referral("ref-0")),
    "SetMemberProfile": ("write", lambda client: client.set_member_profile("m-1", "04-01")),
    "GetMemberProfile": ("read", lambda client: client.get_member_profile("m-1")),
    "Simulate": ("read", lambda client: client.simulate(example_program(), T - 86_400, T + 86_400)),
    "SetRedemptionEstimate": ("admin", lambda client: client.set_redemption_estimate("e-1", T + 86_400, "0.95")),
    "GetRevenue": ("read", lambda client: client.revenue(1_767_225_600, 1_798_761_600)),
}
TOKEN_OF_SCOPE = {"read": READ_TOKEN, "write": WRITE_TOKEN, "admin": ADMIN_TOKEN}


@pytest.mark.parametrize("rpc", sorted(CALLS))
def test_wrong_scope_is_permission_denied_and_changes_nothing(secured, ledger, rpc):
    scope, call = CALLS[rpc]
    before = dump_ledger(ledger)
    for other_scope, token in TOKEN_OF_SCOPE.items():
        if other_scope == scope:
            continue
        with LedgerClient(secured, token=token) as client, pytest.raises(PermissionDenied) as info:
            call(client)
        assert info.value.code == "PERMISSION_DENIED" and scope in str(info.value)
    assert dump_ledger(ledger) == before
    with LedgerClient(secured, token=TOKEN_OF_SCOPE[scope]) as client:
        call(client)  # the right scope is let in


@pytest.mark.parametrize("rpc", sorted(CALLS))
def test_missing_or_unknown_token_is_unauthenticated(secured, ledger, rpc):
    _, call = CALLS[rpc]
    before = dump_ledger(ledger)
    for token in (None, "not-a-known-token-0123456789"):
        with LedgerClient(secured, token=token) as client, pytest.raises(Unauthenticated) as info:
            call(client)
        assert info.value.code == "UNAUTHENTICATED"
    assert dump_ledger(ledger) == before


def test_a_token_with_every_scope_does_everything(secured):
    with LedgerClient(secured, token=ALL_TOKEN) as client:
        for rpc in sorted(CALLS):
            CALLS[rpc][1](client)
        # o-1 123 (fixture), then in name order: Adjust +5, IngestPurchases o-3 100 grocery → 1,
        # RecordPurchase o-2 10,000 electronics × 2 → 200, Redeem −10, Refund 100 of o-1:
        # floor(123 × 100 / 12,345) = 0 → 123 + 5 + 1 + 200 − 10 − 0 = 319.
        assert client.balance("m-1").balance == 319


def test_health_and_reflection_need_no_token(secured):
    with LedgerClient(secured) as client:
        assert client.health() == "SERVING"
        # Reflection answers without a token too (grpcurl works before any token is set up).
        database = ProtoReflectionDescriptorDatabase(client.channel)
        assert set(database.get_services()) == {
            "pointsledger.v1.Ledger", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
            "grpc.reflection.v1.ServerReflection",
        }
        assert database.FindFileContainingSymbol("pointsledger.v1.Ledger").package == "pointsledger.v1"
        # ...while the ledger itself still needs one.
        with pytest.raises(Unauthenticated):
            client.balance("m-1")


def test_token_files_json_and_lines(tmp_path):
    json_file = tmp_path / "tokens.json"
    json_file.write_text(json.dumps({"tokens": [
        {"token": WRITE_TOKEN, "scopes": ["write"], "name": "orders"},
        {"token": ALL_TOKEN, "scopes": "read,admin"},
    ]}))
    lines_file = tmp_path / "tokens.txt"
    lines_file.write_text(f"# token scopes name\n\n{WRITE_TOKEN} write orders\n{ALL_TOKEN}   read,admin\n")
    for path in (json_file, lines_file):
        store = TokenStore.from_file(str(path))
        assert len(store) == 2
        writer = store.authenticate((("authorization", f"Bearer {WRITE_TOKEN}"),))
        assert writer.name == "orders" and writer.scopes == {"write"}
        assert store.authenticate((("authorization", f"bearer {ALL_TOKEN}"),)).scopes == {"read", "admin"}
        assert store.authenticate((("authorization", "Bearer nope-nope-nope-nope"),)) is None
        assert store.authenticate(()) is None


@pytest.mark.parametrize("text, problem", [
    ("short write\n", "16 to"),
    (f"{WRITE_TOKEN} superuser\n", "scopes"),
    (f"{WRITE_TOKEN} write\n{WRITE_TOKEN} read\n", "twice"),
    (f"{WRITE_TOKEN}\n", "expected"),
    ("", "no tokens"),
    ('{"tokens": [{"token": "x", "scopes": ["read"], "extra": 1}]}', "expected"),
    ("{not json", "not valid JSON"),
])
def test_bad_token_files_are_refused_with_the_reason(tmp_path, text, problem):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(TokenFileError) as info:
        TokenStore.from_file(str(path))
    assert problem in str(info.value)


def test_bearer_token_parsing():
    assert bearer_token((("x-other", "1"), ("authorization", "Bearer abc"))) == "abc"
    assert bearer_token((("authorization", "Basic abc"),)) is None
    assert bearer_token((("authorization", "Bearer "),)) is None
    assert bearer_token(None) is None


def test_without_tokens_only_loopback_unless_insecure():
    for address in ("0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "ledger.internal:50051"):
        with pytest.raises(ValueError, match="--insecure"):
            check_bind_policy(address, None, insecure=False)
        check_bind_policy(address, None, insecure=True)
        check_bind_policy(address, TokenStore.from_mapping(TOKENS), insecure=False)
    for address in ("127.0.0.1:0", "localhost:50051", "[::1]:50051"):
        check_bind_policy(address, None, insecure=False)


def test_create_server_refuses_a_public_address_without_tokens(ledger):
    # Refused before anything is bound.
    with pytest.raises(ValueError, match="without tokens"):
        create_server(ledger, "0.0.0.0:0")


# --- TLS ------------------------------------------------------------------------------------


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_pem(path, key, certificate):
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".pem")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


def make_ca(path, common_name):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, _ = _write_pem(path, key, certificate)
    return key, certificate, cert_path


def make_leaf(path, ca, common_name, server):
    ca_key, ca_certificate, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_certificate.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return _write_pem(path, key, builder.sign(ca_key, hashes.SHA256()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory / "ca", "pointsledger test CA")
    other_ca = make_ca(directory / "other-ca", "someone else's CA")
    return {
        "ca": ca[2],
        "server": make_leaf(directory / "server", ca, "pointsledger server", server=True),
        "client": make_leaf(directory / "client", ca, "order pipeline", server=False),
        "stranger": make_leaf(directory / "stranger", other_ca, "stranger", server=False),
        "other_ca": other_ca[2],
    }


def test_tls(ledger, pki):
    cert, key = pki["server"]
    with BackgroundServer(ledger, tls=TlsConfig(cert, key)) as background:
        address = f"127.0.0.1:{background.port}"
        with LedgerClient(address, tls_ca=pki["ca"], timeout_s=10) as client:
            assert client.record_purchase("o-2", "m-1", 10_000, "electronics", T).balance == 323
            assert client.health() == "SERVING"
        with LedgerClient(f"localhost:{background.port}", tls_ca=pki["ca"], timeout_s=10) as client:
            assert client.balance("m-1").balance == 323
        with LedgerClient(address, timeout_s=2) as plaintext, pytest.raises(Unavailable):
            plaintext.balance("m-1")
        with LedgerClient(address, tls_ca=pki["other_ca"], timeout_s=2) as untrusting, pytest.raises(Unavailable):
            untrusting.balance("m-1")


def test_mutual_tls(ledger, pki):
    cert, key = pki["server"]
    with BackgroundServer(ledger, tls=TlsConfig(cert, key, client_ca_file=pki["ca"])) as background:
        address = f"127.0.0.1:{background.port}"
        client_cert, client_key = pki["client"]
        with LedgerClient(address, tls_ca=pki["ca"], tls_cert=client_cert, tls_key=client_key,
                          timeout_s=10) as client:
            assert client.record_purchase("o-2", "m-1", 10_000, "electronics", T).balance == 323
        with LedgerClient(address, tls_ca=pki["ca"], timeout_s=2) as anonymous, pytest.raises(Unavailable):
            anonymous.balance("m-1")
        stranger_cert, stranger_key = pki["stranger"]
        with LedgerClient(address, tls_ca=pki["ca"], tls_cert=stranger_cert, tls_key=stranger_key,
                          timeout_s=2) as stranger, pytest.raises(Unavailable):
            stranger.balance("m-1")
    assert [entry.ref_id for entry in ledger.journal()] == ["o-1", "o-2"]


def test_tokens_over_tls(ledger, pki):
    cert, key = pki["server"]
    with BackgroundServer(ledger, tokens=TOKENS, tls=TlsConfig(cert, key)) as background:
        address = f"127.0.0.1:{background.port}"
        with LedgerClient(address, token=READ_TOKEN, tls_ca=pki["ca"], timeout_s=10) as reader:
            assert reader.balance("m-1").balance == 123
            with pytest.raises(PermissionDenied):
                reader.record_purchase("o-2", "m-1", 10_000, "electronics", T)
        with LedgerClient(address, tls_ca=pki["ca"], timeout_s=10) as anonymous, \
                pytest.raises(pointsledger.LedgerError) as info:
            anonymous.balance("m-1")
        assert info.value.code == "UNAUTHENTICATED"


def test_serve_command_refuses_a_public_address_without_tokens_before_opening_anything(tmp_path, capsys):
    from pointsledger import service

    data = tmp_path / "never-created"
    with pytest.raises(SystemExit) as info:
        service.main(["--data", str(data), "--address", "0.0.0.0:50051"])
    assert info.value.code == 2
    assert "--insecure" in capsys.readouterr().err
    assert not data.exists()
    tokens = tmp_path / "tokens"
    tokens.write_text("short read\n")
    with pytest.raises(SystemExit) as info:
        service.main(["--data", str(data), "--tokens-file", str(tokens)])
    assert info.value.code == 2 and "16 to" in capsys.readouterr().err
    assert not data.exists()
