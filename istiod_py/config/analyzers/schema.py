"""IST0106 SchemaValidationError: a document the loader rejected (unknown field,
bad value, duplicate resource) is reported on that resource, as istioctl does."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from istiod_py.config.analyzers.messages import TYPES, Message
from istiod_py.config.model import ConfigError


def messages(errors: Iterable[ConfigError]) -> Iterator[Message]:
    t = TYPES["IST0106"]
    for e in errors:
        where = f"{e.field}: " if e.field else ""
        text = t.template.format(where + e.message)
        yield Message("IST0106", t.level, text, e.kind or "Resource", e.namespace, e.name or f"doc {e.doc_index}",
                      e.source, e.field)  # fmt: skip
