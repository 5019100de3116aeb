"""The loader is total and its input bounded: each class of hostile document
becomes a ConfigError naming file, document, resource and field — nothing raises,
nothing is expanded before it is measured, no message quotes a whole value."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

from istiod_py.config.loader import load_bytes, load_directory, load_file, load_text
from istiod_py.config.yaml_bounds import MAX_DEPTH, MAX_FILE_BYTES

DR = (
    "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr, namespace: ns}\n"
    "spec:\n  host: r\n"
)
EF_HEAD = """apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: bomb, namespace: ns}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    patch:
      operation: MERGE
      value:
"""


def alias_bomb(levels: int = 9) -> str:
    lines = ["        a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"        a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return EF_HEAD + "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_before_expansion() -> None:
    text = alias_bomb()
    assert len(text) < 1000
    tracemalloc.start()
    started = time.monotonic()
    result = load_text(text, "bomb.yaml")
    elapsed = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not result.configs
    [err] = result.errors
    assert "aliases expand this document" in err.message and err.source == "bomb.yaml"
    assert peak < 5_000_000 and elapsed < 1.0, (peak, elapsed)


def test_a_few_aliases_are_fine() -> None:
    text = EF_HEAD + "        a: &v {name: x}\n        b: *v\n"
    assert not load_text(text, "ok.yaml").errors


def test_recursive_alias_is_refused() -> None:
    result = load_text(EF_HEAD + "        a: &r [*r]\n", "rec.yaml")
    assert not result.configs and "recursive" in result.errors[0].message


def test_deep_nesting_is_refused() -> None:
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    result = load_text(DR + f"  trafficPolicy: {{x: {deep}}}\n", "deep.yaml")
    assert not result.configs and "nesting deeper than" in result.errors[0].message
    nested_lists = '{"apiVersion": "v1", "kind": "List", "items": [' * 300 + "]}" * 300
    result = load_text(nested_lists, "lists.yaml")
    assert result.errors and "nesting deeper than" in result.errors[0].message


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(DR.encode() + b"#" * MAX_FILE_BYTES)
    result = load_file(big)
    assert not result.configs and "4194304-byte limit" in result.errors[0].message


def test_numbers_out_of_range_name_the_field() -> None:
    cases = {
        "  trafficPolicy: {connectionPool: {tcp: {maxConnections: " + "9" * 5000 + "}}}\n": "out of range",
        "  trafficPolicy: {connectionPool: {tcp: {maxConnections: 2147483648}}}\n": "out of range",
        "  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 99999999999999999h}}}\n": "out of range",
        "  trafficPolicy: {loadBalancer: {warmupDurationSecs: 1e400s}}\n": "invalid duration",
    }
    for spec, words in cases.items():
        result = load_text(DR + spec, "n.yaml")
        assert not result.configs, spec[:60]
        [err] = result.errors
        assert words in err.message, str(err)
        assert len(str(err)) < 400, str(err)


def test_float_fields_refuse_infinities_and_nan() -> None:
    vs = (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v, namespace: ns}\n"
        "spec:\n  hosts: [r]\n  http:\n  - route: [{destination: {host: r}}]\n    mirrorPercentage: {value: VALUE}\n"
    )
    for value in (".inf", ".nan", "-.inf", "1e400"):
        result = load_text(vs.replace("VALUE", value), "f.yaml")
        assert not result.configs, value
        assert result.errors[0].field == "spec.http[0].mirrorPercentage.value", str(result.errors[0])


def test_bad_bytes_name_the_line() -> None:
    data = DR.encode() + b"  exportTo: [caf\xe9]\n"
    result = load_bytes(data, "latin1.yaml")
    [err] = result.errors
    assert "not UTF-8" in err.message and err.line == 6


def test_error_text_quotes_only_a_prefix_of_a_value() -> None:
    huge = "x" * 500_000  # four of them stay under the 4 MiB file limit
    docs = [
        DR + f"  trafficPolicy: {{tls: {{mode: {huge}}}}}\n",  # an enum
        DR + f"  exportTo: [{huge}]\n",  # a validation rule
        DR + f"  ? {huge}\n  : 1\n",  # an unknown field
        DR + f"  subsets: [{{name: v1, labels: {{{huge}: [{huge}]}}}}]\n",  # a map key and value
    ]
    result = load_text("\n---\n".join(docs), "h.yaml")
    assert len(result.errors) == 4, [str(e)[:100] for e in result.errors]
    assert all(len(str(e)) < 1500 for e in result.errors), [len(str(e)) for e in result.errors]


def test_struct_values_that_json_cannot_hold_are_errors() -> None:
    text = EF_HEAD + "        n: " + "9" * 60 + "\n        d: 2001-02-03\n"
    result = load_text(text, "s.yaml")
    assert not result.configs
    assert result.errors and result.errors[0].field.startswith("spec.configPatches[0].patch.value")


def test_special_files_are_never_opened_by_load_directory(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DR)
    os.mkfifo(tmp_path / "fifo.yaml")
    started = time.monotonic()
    result = load_directory(tmp_path)
    assert time.monotonic() - started < 5
    assert [c.meta.name for c in result.configs] == ["dr"]
    assert not any("fifo" in e.source for e in result.errors)  # not a regular file: not a config file
    # read directly, it is refused rather than blocking
    assert "not a regular file" in load_file(tmp_path / "fifo.yaml").errors[0].message
