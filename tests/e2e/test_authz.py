"""AuthorizationPolicy and RequestAuthentication end to end: the real control
plane, a client sidecar calling a server sidecar whose inbound listener carries
jwt_authn / RBAC, real upstream apps; assertions on traffic.

One mesh serves the whole module (policies are rewritten between tests) to keep
it fast; every check waits for the full expected picture, so a test never passes
on the previous test's config."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.configs import (
    ONE_REQUEST_PER_CONNECTION,
    client_sidecar,
    docs,
    service,
    workload_entry,
    workload_sidecar,
)
from tests.support.envoy import EnvoyFactory, envoy_factory_context
from tests.support.mesh import Mesh
from tests.support.net import allocate_ip
from tests.support.upstreams import HttpEchoServer, TcpEchoServer, UpstreamFactory, http_request

ISSUER = "https://issuer.test"


def mesh_config(app: HttpEchoServer, db: TcpEchoServer, server_ip: str, db_ip: str, bind: str) -> str:
    return docs(
        service("server"),
        workload_entry("server", server_ip, {"app": "server"}),
        workload_sidecar("server", f"{app.host}:{app.port}", egress_bind=allocate_ip()),
        # A fresh client->server connection per request: Envoy keeps serving connections
        # accepted before a listener update with the old filters until they drain.
        ONE_REQUEST_PER_CONNECTION.format(host="server"),
        service("db", 5432, "tcp"),
        workload_entry("db", db_ip, {"app": "db"}),
        workload_sidecar("db", f"{db.host}:{db.port}", port=5432, protocol="TCP", egress_bind=allocate_ip()),
        client_sidecar(bind, [(9080, "HTTP"), (5432, "TCP")]),
    )


# --- JWTs signed here (RS256 with `cryptography`; no JOSE library needed) ---------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Signer:
    def __init__(self, kid: str = "k1") -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> str:
        pub = self.key.public_key().public_numbers()
        n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
        e = pub.e.to_bytes((pub.e.bit_length() + 7) // 8, "big")
        key = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": _b64(n), "e": _b64(e)}
        return json.dumps({"keys": [key]})

    def token(self, sub: str, *, exp_in: float = 3600, **claims: Any) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        payload = {"iss": ISSUER, "sub": sub, "iat": now, "exp": now + int(exp_in), **claims}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(sig)}"


# --- the shared mesh -------------------------------------------------------------------------


@dataclass
class Env:
    mesh: Mesh
    app: HttpEchoServer
    db: TcpEchoServer
    server_ip: str
    db_ip: str
    bind: str
    signer: Signer

    def apply(self, *docs: str) -> None:
        """Replace the policy file ("" removes every policy)."""
        text = "\n---\n".join(d for d in docs if d.strip())
        if text:
            self.mesh.write("policies.yaml", text)
        else:
            self.mesh.remove("policies.yaml")

    def status(self, path: str, method: str = "GET", headers: Mapping[str, str] | None = None) -> int:
        """client app -> client sidecar -> server sidecar (inbound) -> server app."""
        return http_request(self.bind, 9080, path, host="server:9080", method=method, headers=headers).status

    def direct_status(self, source_ip: str, path: str = "/") -> int:
        """A client without a sidecar, from `source_ip`, straight to the server's inbound."""
        conn = http.client.HTTPConnection(self.server_ip, 9080, timeout=5, source_address=(source_ip, 0))
        return http_request(self.server_ip, 9080, path, host="server:9080", connection=conn).status

    def expect(self, checks: Mapping[str, Callable[[], object]], what: str, timeout: float = 10) -> None:
        """Wait until every check gives its expected value (keys are labels)."""
        last: dict[str, object] = {}

        def ok() -> bool:
            nonlocal last
            last = {k: fn() for k, fn in checks.items()}
            return all(_matches(k, v) for k, v in last.items())

        try:
            self.mesh.wait(ok, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\nlast results: {last}\n{self.mesh.log_tail(20)}") from None


def _matches(label: str, value: object) -> bool:
    expected = label.rsplit("->", 1)[1].strip()
    return str(value) == expected


def tcp_reply(addr: str, port: int, source_ip: str | None = None, timeout: float = 2.0) -> str:
    """One line to a TCP echo; "" when the connection is closed without a reply."""
    try:
        with socket.create_connection(
            (addr, port), timeout=timeout, source_address=(source_ip, 0) if source_ip else None
        ) as s:
            s.sendall(b"ping\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
            return data.decode().strip()
    except OSError:
        return ""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, envoy_bin: str) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("authz")
    ups = UpstreamFactory()
    with envoy_factory_context(tmp / "envoy") as envoys:
        mesh = Mesh(tmp, envoys)
        try:
            app, db = ups.http("server-app"), ups.tcp("db-app")
            server_ip, db_ip, bind = allocate_ip(), allocate_ip(), allocate_ip()
            mesh.write("mesh.yaml", mesh_config(app, db, server_ip, db_ip, bind))
            mesh.start()
            server = mesh.sidecar("server", ip=server_ip, labels={"app": "server"})
            dbsc = mesh.sidecar("db", ip=db_ip, labels={"app": "db"})
            client = mesh.sidecar("client", labels={"app": "client"})
            mesh.wait_listener(server, f"{server_ip}_9080")
            mesh.wait_listener(dbsc, f"{db_ip}_5432")
            mesh.wait_listener(client, f"{bind}_9080")
            e = Env(mesh, app, db, server_ip, db_ip, bind, Signer())
            e.client_ip = client.node_ip  # type: ignore[attr-defined]
            e.expect({"GET / -> 200": lambda: e.status("/")}, "traffic without policies")
            yield e
        finally:
            mesh.stop()
            ups.stop_all()


def policy(spec: str, name: str = "p", action: str = "ALLOW", app: str = "server") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  action: {action}
{spec}
"""


# --- HTTP ---------------------------------------------------------------------------------------


def test_allow_and_deny_by_path_method_and_header_deny_wins(env: Env) -> None:
    env.apply(
        policy(
            """  rules:
  - to: [{operation: {paths: ["/public/*"], methods: [GET]}}]
  - when: [{key: "request.headers[x-token]", values: [letmein]}]""",
            "allow",
        ),
        policy("  rules: [{to: [{operation: {paths: [/public/secret]}}]}]", "deny", "DENY"),
    )
    token = {"x-token": "letmein"}
    env.expect(
        {
            "GET /public/a -> 200": lambda: env.status("/public/a"),
            "POST /public/a -> 403": lambda: env.status("/public/a", "POST"),
            "GET /private -> 403": lambda: env.status("/private"),
            "GET /private with header -> 200": lambda: env.status("/private", headers=token),
            "POST /private with header -> 200": lambda: env.status("/private", "POST", headers=token),
            "GET /private wrong header -> 403": lambda: env.status("/private", headers={"x-token": "no"}),
            # DENY is evaluated before ALLOW: a request two ALLOW rules accept is still denied.
            "GET /public/secret -> 403": lambda: env.status("/public/secret"),
            "GET /public/secret with header -> 403": lambda: env.status("/public/secret", headers=token),
        },
        "path/method/header policies",
    )
    before = env.app.state.count("/public/secret")
    assert env.status("/public/secret", headers=token) == 403
    assert env.app.state.count("/public/secret") == before  # denied in the sidecar, never reached the app


def test_deny_all_then_allow_all(env: Env) -> None:
    env.apply(policy("", "deny-all"))  # an ALLOW policy without rules
    env.expect({"GET / -> 403": lambda: env.status("/"), "GET /x -> 403": lambda: env.status("/x")}, "deny all")
    r = http_request(env.bind, 9080, "/", host="server:9080")
    assert r.status == 403 and "RBAC: access denied" in r.text
    env.apply(policy("  rules: [{}]", "allow-all"))
    env.expect({"GET / -> 200": lambda: env.status("/"), "POST /x -> 200": lambda: env.status("/x", "POST")}, "allow")


def test_source_ip_and_remote_ip(env: Env) -> None:
    # Sidecars bind their upstream connections to their workload address (see
    # agent/bootstrap.py), so the server's inbound sees the client's own IP.
    other = allocate_ip()
    cip = env.client_ip  # type: ignore[attr-defined]
    env.apply(policy(f"  rules: [{{from: [{{source: {{ipBlocks: [{cip}/32]}}}}]}}]"))
    env.expect(
        {
            "via client sidecar -> 200": lambda: env.status("/"),
            "direct from the client ip -> 200": lambda: env.direct_status(cip),
            "direct from another ip -> 403": lambda: env.direct_status(other),
        },
        "ipBlocks",
    )
    env.apply(
        policy(f"  rules: [{{from: [{{source: {{notIpBlocks: [{cip}/32]}}}}]}}]", "allow"),
        policy("  rules: [{from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]}]", "deny", "DENY"),
    )
    xff = {"x-forwarded-for": "203.0.113.9"}
    env.expect(
        {
            "direct from the client ip -> 403": lambda: env.direct_status(cip),
            "direct from another ip -> 200": lambda: env.direct_status(other),
            # remote.ip is the original client from X-Forwarded-For (as Istio documents).
            "remote ip denied -> 403": lambda: http_request(
                env.server_ip, 9080, "/", host="server:9080", headers=xff,
                connection=http.client.HTTPConnection(env.server_ip, 9080, timeout=5, source_address=(other, 0)),
            ).status,
        },
        "notIpBlocks and remoteIpBlocks",
    )  # fmt: skip


def test_source_namespace_needs_a_peer_identity(env: Env) -> None:
    """Without mTLS there is no peer principal, so a namespace rule cannot match
    (Istio behaves the same); notNamespaces in a DENY therefore denies."""
    env.apply(policy("  rules: [{from: [{source: {namespaces: [default]}}], to: [{operation: {paths: [/ns]}}]}]"))
    env.expect({"GET /ns -> 403": lambda: env.status("/ns"), "GET /x -> 403": lambda: env.status("/x")}, "ns")
    env.apply(
        policy("  rules: [{}]", "allow"),
        policy("  rules: [{from: [{source: {notNamespaces: [default]}}], to: [{operation: {paths: [/ns]}}]}]",
               "deny", "DENY"),
    )  # fmt: skip
    env.expect({"GET /ns -> 403": lambda: env.status("/ns"), "GET /x -> 200": lambda: env.status("/x")}, "notNs")


# --- JWT -----------------------------------------------------------------------------------------


def request_authn(jwks: str) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: server}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwks: '{jwks}'
    outputPayloadToHeader: x-jwt-payload
"""


def test_jwt_valid_invalid_expired_and_missing(env: Env) -> None:
    s = env.signer
    env.apply(
        request_authn(s.jwks()),
        policy(
            f"""  rules:
  - to: [{{operation: {{notPaths: ["/secure*", /admin]}}}}]
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
    to: [{{operation: {{paths: ["/secure*"]}}}}]
  - from: [{{source: {{requestPrincipals: ["*"]}}}}]
    to: [{{operation: {{paths: [/admin]}}}}]
    when: [{{key: "request.auth.claims[groups]", values: [admin]}}]"""
        ),
    )
    alice = {"authorization": f"Bearer {s.token('alice', groups=['admin', 'dev'])}"}
    bob = {"authorization": f"Bearer {s.token('bob', groups='dev')}"}
    expired = {"authorization": f"Bearer {s.token('alice', exp_in=-600)}"}
    forged = {"authorization": f"Bearer {Signer().token('alice')}"}  # signed by a key not in the JWKS
    garbage = {"authorization": "Bearer not.a.jwt"}
    env.expect(
        {
            "open, no token -> 200": lambda: env.status("/open"),
            "open, valid -> 200": lambda: env.status("/open", headers=alice),
            "open, expired -> 401": lambda: env.status("/open", headers=expired),
            "open, forged -> 401": lambda: env.status("/open", headers=forged),
            "open, garbage -> 401": lambda: env.status("/open", headers=garbage),
            "secure, no token -> 403": lambda: env.status("/secure"),
            "secure, alice -> 200": lambda: env.status("/secure/x", headers=alice),
            "secure, bob -> 403": lambda: env.status("/secure/x", headers=bob),
            "secure, expired -> 401": lambda: env.status("/secure", headers=expired),
            "admin, alice (groups has admin) -> 200": lambda: env.status("/admin", headers=alice),
            "admin, bob (groups=dev) -> 403": lambda: env.status("/admin", headers=bob),
            "admin, no token -> 403": lambda: env.status("/admin"),
        },
        "JWT authn + requestPrincipals",
    )
    # The app gets the verified payload (outputPayloadToHeader).
    env.status("/open", headers=alice)
    last = env.app.state.last
    assert last is not None and last.header("x-jwt-payload")
    payload = json.loads(base64.urlsafe_b64decode(str(last.header("x-jwt-payload")) + "=="))
    assert payload["sub"] == "alice" and payload["iss"] == ISSUER


# --- TCP -----------------------------------------------------------------------------------------


def test_tcp_workload_allow_and_deny_by_source_ip_and_port(env: Env) -> None:
    other = allocate_ip()
    cip = env.client_ip  # type: ignore[attr-defined]

    def via_client() -> str:
        return tcp_reply(env.bind, 5432)

    def direct(src: str) -> Callable[[], str]:
        return lambda: tcp_reply(env.db_ip, 5432, src)

    ok = "db-app: ping"
    rule = f"  rules: [{{from: [{{source: {{ipBlocks: [{cip}]}}}}], to: [{{operation: {{ports: ['5432']}}}}]}}]"
    env.apply(policy(rule,
                     app="db"))  # fmt: skip
    env.expect(
        {
            f"via client -> {ok}": via_client,
            f"direct client ip -> {ok}": direct(cip),
            "direct other -> ": direct(other),
        },
        "TCP ALLOW by source ip and port",
    )
    env.apply(
        policy("  rules: [{}]", "allow", app="db"),
        policy(f"  rules: [{{from: [{{source: {{ipBlocks: [{cip}]}}}}]}}]", "deny", "DENY", app="db"),
    )
    env.expect(
        {
            "via client -> ": via_client,
            "direct client ip -> ": direct(cip),
            f"direct other -> {ok}": direct(other),
        },
        "TCP DENY by source ip",
    )
    # An ALLOW policy whose only rule is HTTP-only applies to nothing on TCP: deny all.
    env.apply(policy("  rules: [{to: [{operation: {methods: [GET]}}]}]", app="db"))
    env.expect({"via client -> ": via_client, "direct other -> ": direct(other)}, "HTTP-only ALLOW on TCP")
    # A DENY with an HTTP-only field ignores that field on TCP: wider deny (ports: 5433 spares us).
    env.apply(
        policy("  rules: [{}]", "allow", app="db"),
        policy("  rules: [{to: [{operation: {methods: [POST], ports: ['5433']}}]}]", "deny", "DENY", app="db"),
    )
    env.expect({f"via client -> {ok}": via_client}, "DENY on another port")
    env.apply(
        policy("  rules: [{}]", "allow", app="db"),
        policy("  rules: [{to: [{operation: {methods: [POST]}}]}]", "deny", "DENY", app="db"),
    )
    env.expect({"via client -> ": via_client, "direct other -> ": direct(other)}, "HTTP-only DENY on TCP")
    env.apply()
    env.expect({f"via client -> {ok}": via_client}, "no policy")


# --- principals (mTLS peer identity) ----------------------------------------------------------------


def mtls_config(app: HttpEchoServer, server_ip: str, bind: str, bind2: str) -> str:
    clients = "".join(
        f"""---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {name}, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: {name}}}}}
  egress: [{{port: {{number: 9080, protocol: HTTP, name: http}}, bind: {b}, hosts: ["./*"]}}]
"""
        for name, b in (("client", bind), ("client2", bind2))
    )
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: server, namespace: default}}
spec:
  selector: {{app: server}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: server, namespace: default}}
spec:
  address: {server_ip}
  serviceAccount: server-sa
  labels: {{app: server, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: server, namespace: default}}
spec:
  host: server
  trafficPolicy: {{connectionPool: {{http: {{maxRequestsPerConnection: 1}}}}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: server, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: server}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    defaultEndpoint: {app.host}:{app.port}
  egress: [{{hosts: ["./*"], port: {{number: 9999, protocol: HTTP, name: http}}, bind: {allocate_ip()}}}]
{clients}"""


def test_principals_from_mtls_peer_certificates(
    tmp_path: Path, envoy_factory: EnvoyFactory, upstreams: UpstreamFactory
) -> None:
    mesh = Mesh(tmp_path, envoy_factory)
    try:
        app = upstreams.http("server-app")
        server_ip, bind, bind2 = allocate_ip(), allocate_ip(), allocate_ip()
        mesh.write("mesh.yaml", mtls_config(app, server_ip, bind, bind2))
        mesh.write(
            "policies.yaml",
            policy(
                """  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/client-sa]}}]
  - from: [{source: {namespaces: [default]}}]
    to: [{operation: {paths: [/ns]}}]"""
            ),
        )
        mesh.start_with_ca()
        server = mesh.agent_sidecar("server", ip=server_ip, labels={"app": "server"}, service_account="server-sa")
        mesh.agent_sidecar("client", labels={"app": "client"}, service_account="client-sa")
        mesh.agent_sidecar("client2", labels={"app": "client2"}, service_account="other-sa")
        mesh.wait_listener(server, f"{server_ip}_9080", 15)

        def via(b: str, path: str = "/") -> int:
            return http_request(b, 9080, path, host="server:9080").status

        def plaintext() -> int:
            return http_request(server_ip, 9080, "/ns", host="server:9080").status

        checks = {
            "client-sa -> 200": lambda: via(bind),
            "other-sa -> 403": lambda: via(bind2),
            "other-sa, namespace rule -> 200": lambda: via(bind2, "/ns"),
            "plaintext, no identity -> 403": plaintext,
        }
        last: dict[str, int] = {}

        def ok() -> bool:
            last.update({k: fn() for k, fn in checks.items()})
            return all(_matches(k, v) for k, v in last.items())

        try:
            mesh.wait(ok, 20, "principal-based ALLOW over mTLS")
        except AssertionError as e:
            raise AssertionError(f"{e}\nlast: {last}") from None
    finally:
        mesh.stop()
