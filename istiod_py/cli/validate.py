"""`istiod-py validate` and `istiod-py analyze`: check Istio YAML without serving it.

As istioctl splits them:

- `validate PATH...` checks each file on its own, as `kubectl apply -f FILE` /
  `istioctl validate -f FILE` would: every resource against the schema, and a
  resource defined twice within one file. Files that define the same resource are
  alternatives (istio.io's task steps, deploy/samples/*), not an error here.
- `analyze PATH...` checks everything given as one mesh, as `serve --config-dir`
  loads it: a resource defined in two files is an error, and istiod-style analysis
  (IST0101: a subset, gateway or host that does not exist) runs across files.

A directory stands for every *.yaml/*.yml file beneath it (sorted, as the file
source reads it); `-` is stdin."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from istiod_py.cli.common import EXIT_CODES_HELP, CliError, ExitCode, SubParsers, add_output_flag, emit

if TYPE_CHECKING:
    from istiod_py.config.loader import LoadResult
    from istiod_py.config.model import ConfigError

STDIN = "-"


def register(sub: SubParsers) -> None:
    # `analyze` (one mesh, Istio's analyzers) is its own group: cli/analyze.py.
    for name, mesh, text in (
        ("validate", False, "check Istio YAML, each file on its own (as kubectl apply -f FILE would take it)"),
    ):
        p = sub.add_parser(
            name,
            help=text,
            description=__doc__,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("paths", nargs="+", metavar="PATH", help="file, directory (every *.yaml/*.yml), or - (stdin)")
        add_output_flag(p)
        p.set_defaults(func=run_validate, one_mesh=mesh)


def yaml_files(root: Path) -> list[Path]:
    """The files `serve --config-dir` reads under `root` (the rule of config/loader.py `load_directory`)."""
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CliError(
            f"{source}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8 YAML",
            ExitCode.INPUT,
        ) from None


def _read(path: Path) -> str:
    try:
        return _decode(path.read_bytes(), str(path))
    except OSError as e:
        raise CliError(f"{path}: cannot read: {e.strerror or e}", ExitCode.INPUT) from None


def read_inputs(paths: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(source name, text) per input file; a missing or unreadable input is a CliError (exit 3)."""
    for arg in paths:
        if arg == STDIN:
            yield "<stdin>", _decode(sys.stdin.buffer.read(), "<stdin>")
            continue
        p = Path(arg)
        if p.is_dir():
            files = yaml_files(p)
            if not files:
                raise CliError(f"{arg}: directory holds no *.yaml or *.yml file", ExitCode.INPUT)
            for f in files:
                yield str(f), _read(f)
        elif p.exists():
            yield arg, _read(p)
        else:
            raise CliError(f"{arg}: no such file or directory", ExitCode.INPUT)


def _error_dict(e: ConfigError) -> dict[str, Any]:
    d = {k: v for k, v in dataclasses.asdict(e).items() if v not in ("", None)}
    d["text"] = str(e)
    return d


def run_validate(args: argparse.Namespace) -> int:
    # The loader pulls in every Istio proto: imported here so other commands start fast.
    from istiod_py.config.loader import LoadResult, load_text
    from istiod_py.config.store import reject_duplicates

    inputs = list(read_inputs(args.paths))  # every input read first: a bad path fails before any output
    one_mesh: bool = args.one_mesh
    merged = LoadResult()
    errors: list[ConfigError] = []
    for source, text in inputs:
        loaded = load_text(text, source)
        if one_mesh:
            merged.extend(loaded)
        else:
            checked = reject_duplicates(loaded)
            errors += checked.errors
            merged.extend(checked)
    if one_mesh:
        merged = reject_duplicates(merged)
        errors = list(merged.errors)
    warnings = _analysis(merged) if one_mesh else []
    count = len(merged.configs) + len(merged.services) + len(merged.endpoint_slices)
    report = {
        "mode": "one mesh" if one_mesh else "each file",
        "files": len(inputs),
        "resources": count,
        "errors": [_error_dict(e) for e in errors],
        "warnings": [_error_dict(w) for w in warnings],
    }
    emit(report, args.output, _text)
    return ExitCode.FAILED if errors else ExitCode.OK


def _analysis(res: LoadResult) -> list[ConfigError]:
    from istiod_py.config.analysis import analyze
    from istiod_py.registry.aggregate import Aggregator, SourceSnapshot

    agg = Aggregator()
    agg.set_source("files", SourceSnapshot(tuple(res.configs), tuple(res.services), tuple(res.endpoint_slices)))
    state = agg.build()
    from istiod_py.config.gatewayapi.status import warnings as gateway_api_warnings

    # Gateway API resources whose status conditions are not healthy (NotAllowedByListeners, ...).
    return analyze(list(res.configs), state.services, state.mesh.trust_domain) + gateway_api_warnings(
        state.gateway_api_status
    )


def _text(report: dict[str, Any]) -> list[list[str]]:
    """The table format: one line per warning and error, then a summary."""
    rows = [[f"Warning: {w['text']}"] for w in report["warnings"]]
    rows += [[f"Error: {e['text']}"] for e in report["errors"]]
    files = report["files"]
    how = "as one mesh" if report["mode"] == "one mesh" else "each file on its own"
    summary = f"{report['resources']} resources valid in {files} file{'s' * (files != 1)} ({how}), "
    rows.append([summary + f"{len(report['errors'])} errors"])
    return rows
