"""`python -m istiod_py.config.unsupported > docs/field-support.md`"""

from istiod_py.config.unsupported.walker import render_doc

print(render_doc(), end="")
