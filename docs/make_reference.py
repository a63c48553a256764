"""Regenerate the README's command reference from the app's own option metadata (--help).

Usage: python docs/make_reference.py [--check]. With --check, exit 1 if README.md is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- commands:start -->", "<!-- commands:end -->"


def _cell(text: str) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _command_md(path: str, cmd) -> list[str]:
    lines = [f"### `{path}`", ""]
    doc = (cmd.help or "").strip()
    if doc:
        paras = doc.split("\n\n")
        lines += [_cell(paras[0]), ""]
        rest = "\n\n".join(paras[1:]).strip()
        if rest:
            lines += ["```text", *[l.strip() for l in rest.splitlines() if l.strip()], "```", ""]
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    opts = [p for p in cmd.params if p.param_type_name == "option" and not p.hidden]
    usage = " ".join([path] + [f"{a.name.upper()}{'...' if a.nargs == -1 else ''}" for a in args] + (["[OPTIONS]"] if opts else []))
    lines += [f"Usage: `{usage}`", ""]
    if opts:
        lines += ["| option | description | default |", "| --- | --- | --- |"]
        for o in opts:
            names = ", ".join(f"`{n}`" for n in [*o.opts, *o.secondary_opts])
            default = o.default if (o.default is not None and not o.is_flag and o.show_default is not False) else ""
            if callable(default) or str(default).startswith("<"):
                default = ""
            lines.append(f"| {names} | {_cell(o.help or '')} | {_cell(str(default))} |")
        lines.append("")
    return lines


def reference() -> str:
    from munit_cli.cli import app

    root = typer.main.get_command(app)
    out: list[str] = []
    ctx = typer.Context(root)

    def walk(prefix: str, group) -> None:
        for name in sorted(group.list_commands(ctx)):
            cmd = group.get_command(ctx, name)
            if hasattr(cmd, "list_commands"):
                walk(f"{prefix} {name}", cmd)
            else:
                out.extend(_command_md(f"{prefix} {name}", cmd))

    walk("munit", root)
    return "\n".join(out).rstrip() + "\n"


def updated_readme() -> str:
    text = README.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n\n{reference()}\n{END}{tail}"


if __name__ == "__main__":
    new = updated_readme()
    if "--check" in sys.argv:
        sys.exit(0 if new == README.read_text() else 1)
    README.write_text(new)
