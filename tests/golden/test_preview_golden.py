"""`istiod-py preview --from BASE --config-dir NEW` golden cases (issue 16).

tests/golden/preview/base is the current config (the bookinfo shape of
tests/unit/xds_client.py); each case's `overlay/` files replace or add files of
the same name to make NEW; `expected.txt` is the command's output and
`exit_code` its status (0: nothing changes, 1: something does). Proxies are the
config's WorkloadEntries. `--update-golden` rewrites the expected files."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest

from istiod_py.cli.app import main

HERE = Path(__file__).resolve().parent / "preview"
CASES = sorted(p.name for p in HERE.iterdir() if (p / "overlay").is_dir())


def _new_dir(case: str, tmp: Path) -> Path:
    new = tmp / "new"
    shutil.copytree(HERE / "base", new)
    for f in (HERE / case / "overlay").iterdir():
        shutil.copy(f, new / f.name)
    return new


@pytest.mark.parametrize("case", CASES)
def test_preview_golden(case: str, tmp_path: Path, update_golden: bool) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["preview", "--from", str(HERE / "base"), "--config-dir", str(_new_dir(case, tmp_path))])
    text = f"exit {code}\n{out.getvalue()}"
    expected = HERE / case / "expected.txt"
    if update_golden:
        expected.write_text(text)
    assert text == expected.read_text(), f"preview output of {case} differs (--update-golden to accept)"


def test_preview_cases_cover_the_issue() -> None:
    assert {"route_change", "endpoint_change", "sidecar_scope", "noop"} <= set(CASES)
    codes = {c: (HERE / c / "expected.txt").read_text().split("\n", 1)[0] for c in CASES}
    assert codes["noop"] == "exit 0" and all(v == "exit 1" for k, v in codes.items() if k != "noop"), codes
