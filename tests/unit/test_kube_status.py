"""Analysis messages -> status.validationMessages (kube/status.py), without a cluster."""

from __future__ import annotations

from istiod_py.config.model import ConfigError
from istiod_py.kube.convert import stored_messages
from istiod_py.kube.status import status_body, validation_messages


def test_messages_grouped_per_resource_with_istio_levels() -> None:
    errs = [
        ConfigError(
            "k",
            0,
            'IST0101 ReferencedResourceNotFound: Referenced gateway not found: "a/b"',
            "VirtualService",
            "a",
            "v",
        ),
        ConfigError(
            "k", 0, 'IST0101 ReferencedResourceNotFound: Referenced host not found: "x"', "VirtualService", "a", "v"
        ),
        ConfigError("k", 0, "IST0999 SomethingElse: text", "DestinationRule", "a", "d"),
        ConfigError("k", 0, "not an analysis message", "DestinationRule", "a", "e"),
    ]
    got = validation_messages(errs)
    assert got == {
        ("VirtualService", "a", "v"): (("IST0101", "ReferencedResourceNotFound", "ERROR"),),
        ("DestinationRule", "a", "d"): (("IST0999", "SomethingElse", "WARNING"),),
    }
    body = status_body(got[("VirtualService", "a", "v")])
    [m] = body["status"]["validationMessages"]
    assert m["type"] == {"code": "IST0101", "name": "ReferencedResourceNotFound"} and m["level"] == "ERROR"
    # What the API server stores reads back as the same tuple: no rewrite loop.
    assert stored_messages(body) == got[("VirtualService", "a", "v")]
    assert status_body(()) == {"status": {"validationMessages": None}}
