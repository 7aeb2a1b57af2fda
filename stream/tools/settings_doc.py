"""Render the settings reference for docs/configuration.md: one table per section.

    .venv/bin/python -m stream.tools.settings_doc

A unit test checks that docs/configuration.md contains exactly this text, so the reference
cannot drift from the code.
"""

from __future__ import annotations

from stream.settings import SECTIONS, env_of, flag_of


def settings_table() -> str:
    """Markdown: per section (stream.settings.sections) a heading, what the section is
    for, and a table of flag, environment variable, default and description."""
    out: list[str] = []
    for name, section in SECTIONS.items():
        doc = " ".join((section.__doc__ or "").split())
        out += [f"### {name}", "", doc, "",
                "| flag | environment variable | default | what it sets |",
                "| --- | --- | --- | --- |"]
        for field, info in section.model_fields.items():
            if info.default_factory is not None:
                default = "the bundled reference model"
            elif info.default is None:
                default = "unset"
            else:
                default = f"`{info.default}`"
            out.append(f"| `{flag_of(field)}` | `{env_of(field)}` | {default} | "
                       f"{info.description} |")
        out.append("")
    return "\n".join(out).rstrip()


if __name__ == "__main__":
    print(settings_table())
