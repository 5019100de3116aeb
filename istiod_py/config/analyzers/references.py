"""IST0101 and istiod_py's own ISTPY codes from config/analysis.py (the warnings
/debug/configz shows), turned into Messages: that module writes each as
"CODE Name: text"; the code picks Istio's level, the text stays as written."""

from __future__ import annotations

from collections.abc import Iterator

from istiod_py.config.analyzers.context import Context
from istiod_py.config.analyzers.messages import TYPES, Message


def analyze(ctx: Context) -> Iterator[Message]:
    from istiod_py.config.analysis import analyze as cross_reference

    for w in cross_reference(ctx.configs, ctx.services, ctx.domain):
        head, sep, text = w.message.partition(": ")
        code = head.split(" ", 1)[0] if sep else ""
        if not code.startswith("IST"):
            code, text = "ISTPY0000", w.message
        t = TYPES.get(code)
        level = t.level if t is not None else "Warning"
        yield Message(code, level, text, w.kind, w.namespace, w.name, w.source, w.field)
