"""SDS references for `credentialName` (Gateway servers, DestinationRule client
TLS), named and sourced as istiod names them: `kubernetes://NAME` (a name that
already carries a scheme, such as the Gateway API conversion's
`kubernetes-gateway://NS/NAME`, is kept), the CA part `<that name>-cacert`, both
fetched over the proxy's own ADS stream. Shared by gateway/credentials.py and
traffic/upstream_tls.py; istiod_py/kube/credentials.py answers them."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2

KUBERNETES_PREFIX = "kubernetes://"
KUBERNETES_GATEWAY_PREFIX = "kubernetes-gateway://"
CA_SUFFIX = "-cacert"  # istiod's SdsCaSuffix


def credential_secret_name(credential: str) -> str:
    if credential.startswith((KUBERNETES_PREFIX, KUBERNETES_GATEWAY_PREFIX)):
        return credential
    return KUBERNETES_PREFIX + credential


def ads_config() -> config_source_pb2.ConfigSource:
    """SDS over the proxy's ADS stream (istiod's SDSAdsConfig; the initial fetch
    timeout stays Envoy's default, as istiod leaves it: a missing Secret must not
    hold a listener forever)."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )
