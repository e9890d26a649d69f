"""Griffe extension for the API reference: a Keras-style ``Example:`` section is read as ``Examples:``.

kerafine's docstrings title their runnable section ``Example:`` (Keras style) with the
example unindented below it, as the last section. griffe parses only an indented
``Examples:`` section into code (``>>>`` lines); otherwise doctest lines would be rendered as
Markdown (``>>>`` as nested quotes, ``seq[0][1]`` as a reference link).
"""

import re

import griffe

_EXAMPLE = re.compile(r"^Example:[ \t]*\n", flags=re.M)


def examples_section(docstring: str) -> str:
    m = _EXAMPLE.search(docstring)
    if m is None:
        return docstring
    rest = docstring[m.end() :]
    first = next((line for line in rest.splitlines() if line.strip()), "")
    if first[:1].isspace():  # already an indented section
        return docstring[: m.start()] + "Examples:\n" + rest
    indented = "\n".join("    " + line if line.strip() else "" for line in rest.splitlines())
    return docstring[: m.start()] + "Examples:\n" + indented


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = examples_section(obj.docstring.value)
