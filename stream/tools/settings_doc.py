"""Render the settings reference table for docs/configuration.md.

    .venv/bin/python -m stream.tools.settings_doc

A unit test checks that docs/configuration.md contains exactly this table, so the reference
cannot drift from the code.
"""

from __future__ import annotations

from stream.settings import Settings, env_of, flag_of


def settings_table() -> str:
    """Markdown table: flag, environment variable, default, description."""
    rows = ["| flag | environment variable | default | what it sets |",
            "| --- | --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        if info.default_factory is not None:
            default = "the bundled reference model"
        elif info.default is None:
            default = "unset"
        else:
            default = f"`{info.default}`"
        rows.append(f"| `{flag_of(name)}` | `{env_of(name)}` | {default} | {info.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
