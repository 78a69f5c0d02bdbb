"""The configuration reference of the README, generated from config.yaml.

Each ``KEY: ${ENV_VAR:default}`` line of config.yaml becomes a row (nested
keys are written ``PARENT.KEY``); the comment lines just above a key, or at
the end of its line, describe it. ``python -m shared.configdoc`` prints the
table; a test keeps the README's copy in step.
"""
from __future__ import annotations

import re
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][A-Za-z0-9_]*):\s*(?P<value>.*?)\s*(#\s*(?P<note>.*))?$")
ENV = re.compile(r"\$\{(?P<env>[A-Z0-9_]+):?(?P<default>[^}]*)\}")


def rows(text: str) -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    parents: list[str] = []
    comment: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("# ").strip())
            continue
        if not stripped:
            comment = []
            continue
        match = LINE.match(raw)
        if not match:
            comment = []
            continue
        depth = len(match["indent"]) // 2
        parents = parents[:depth] + [match["key"]]
        env = ENV.search(match["value"] or "")
        if env:
            note = " ".join(filter(None, [*comment, match["note"]]))
            out.append((".".join(parents), env["env"], env["default"] or "(none)", note))
        comment = []
    return out


def markdown(text: str | None = None) -> str:
    text = CONFIG.read_text() if text is None else text
    lines = ["| setting | env var | default | what |", "|---|---|---|---|"]
    for key, env, default, note in rows(text):
        lines.append(f"| `{key}` | `{env}` | `{default}` | {note.replace('|', '/')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
