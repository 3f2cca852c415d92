"""README.md and docs/*.md stay true: every relative link (and #anchor) resolves, every
`nmt-*` command shown in a code block is a console script whose options exist, the Commands
table names only real options, and the README's test command is the one CI runs.

The commands are checked by their own argparse parsers, with nothing else run: the CLI
entry point is called with the example's arguments while `ArgumentParser.parse_args` is
replaced by a strict `parse_known_args` (no abbreviations) that raises before any work."""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib
import io
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SRC = re.compile(r"""<(?:img|a)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""")
FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+-]*)")
SHELL_FENCES = {"", "bash", "sh", "shell", "console", "text"}


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _scan(path: Path) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(prose lines, shell code lines) of a Markdown file, each as (line number, text).
    Code is a fenced block in a shell language or an indented block after a blank line."""
    prose, code = [], []
    fence, shell, indented, blank = None, False, False, True
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence, shell = match.group(1), match.group(2).lower() in SHELL_FENCES
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            elif shell:
                code.append((number, line))
        elif line.startswith(("    ", "\t")) and (blank or indented):
            indented = True
            code.append((number, line))
        else:
            indented = False
            prose.append((number, line))
        blank = not line.strip()
    return prose, code


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for _, line in _scan(path)[0]:
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            slug = _slug(match.group(1))
            anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _ignored(relative: str) -> bool:
    """Whether .gitignore keeps `relative` out of the repository (its simple patterns)."""
    patterns = [
        p.strip()
        for p in (ROOT / ".gitignore").read_text().splitlines()
        if p.strip() and not p.startswith(("#", "!"))
    ]
    parts = Path(relative).parts
    return any(fnmatch.fnmatch(part, p.rstrip("/")) for p in patterns for part in parts)


def _links() -> list[tuple[Path, int, str]]:
    found = []
    for doc in DOCS:
        for number, line in _scan(doc)[0]:
            line = re.sub(r"`[^`]*`", "", line)  # code spans are not links
            for match in (*LINK.finditer(line), *HTML_SRC.finditer(line)):
                found.append((doc, number, match.group(1)))
    return found


LINKS = _links()


@pytest.mark.parametrize(
    "doc, number, target", LINKS, ids=[f"{_name(d)}:{n}:{t}" for d, n, t in LINKS]
)
def test_relative_link_resolves(doc: Path, number: int, target: str) -> None:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
        return
    where = f"{_name(doc)}:{number}: {target}"
    path_part, _, anchor = target.partition("#")
    path = (doc.parent / path_part).resolve() if path_part else doc
    assert path.exists(), f"{where}: no such file"
    assert path.is_relative_to(ROOT), f"{where}: outside the repository"
    relative = _name(path)
    assert not _ignored(relative), f"{where}: git ignores {relative}"
    if anchor and path.suffix == ".md":
        assert anchor in _anchors(path), f"{where}: {relative} has no heading #{anchor}"


# --- documented commands ---------------------------------------------------------------


def _console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts] (read without tomllib, which Python 3.10 lacks)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[project\.scripts\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert section, "pyproject.toml has no [project.scripts]"
    return dict(re.findall(r'^\s*"?([\w.-]+)"?\s*=\s*"([^"]+)"', section.group(1), re.M))


SCRIPTS = _console_scripts()


def _commands() -> list[tuple[Path, int, list[str]]]:
    """Every `nmt-*` (or `python -m nmt ...`) command line in the docs' shell code, as
    (file, line, [script, args...]); `[--option VALUE]` brackets (optional parts) dropped."""
    found = []
    for doc in DOCS:
        logical, start = "", 0
        for number, line in _scan(doc)[1]:
            if not logical:
                start = number
            logical += line.rstrip()
            if logical.endswith("\\"):
                logical = logical[:-1] + " "
                continue
            lexer = shlex.shlex(logical, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words, logical = list(lexer), ""
            segment: list[str] = []
            for word in [*words, ";"]:
                if word and set(word) <= set("|&;<>()"):
                    found.extend((doc, start, cmd) for cmd in [_as_nmt(segment)] if cmd)
                    segment = []
                else:
                    segment.append(word)
    return found


def _as_nmt(words: list[str]) -> list[str] | None:
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):  # VAR=value before the command
        words = words[1:]
    if words[:3] in (["python", "-m", "nmt"], ["python3", "-m", "nmt"]) and len(words) > 3:
        words = [f"nmt-{words[3]}", *words[4:]]
    if not words or not words[0].startswith("nmt-"):
        return None
    args = [word.removeprefix("[").removesuffix("]") for word in words[1:]]
    return [words[0], *[arg for arg in args if arg not in ("", "...")]]


class _Parsed(Exception):
    """Raised in place of parse_args' return: the command line parsed, nothing run."""

    def __init__(self, parser: argparse.ArgumentParser, extras: list[str]) -> None:
        super().__init__(parser.prog)
        self.parser, self.extras = parser, extras


_PARSE_KNOWN_ARGS = argparse.ArgumentParser.parse_known_args


def _strict_parse(
    self: argparse.ArgumentParser, args: list[str] | None = None, namespace=None
) -> argparse.Namespace:
    self.allow_abbrev = False  # `--thread` must not pass for `--threads`
    _, extras = _PARSE_KNOWN_ARGS(self, args, namespace)
    raise _Parsed(self, extras)


def _only_parser(self: argparse.ArgumentParser, args=None, namespace=None) -> argparse.Namespace:
    raise _Parsed(self, [])


def _entry(script: str) -> Callable[[list[str]], int]:
    module, _, function = SCRIPTS[script].partition(":")
    return getattr(importlib.import_module(module), function)


def _parse(
    monkeypatch: pytest.MonkeyPatch, script: str, args: list[str], parse=_strict_parse
) -> tuple[_Parsed | None, str]:
    """(the parse, argparse's error output) for `script args`, through the real parser.
    Every parse method is replaced, so that the command can never go on to do its work."""
    for method in ("parse_args", "parse_known_args", "parse_intermixed_args"):
        monkeypatch.setattr(argparse.ArgumentParser, method, parse)
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            _entry(script)(args)
        except _Parsed as parsed:
            return parsed, ""
        except SystemExit:  # argparse's error(): missing, invalid or unknown arguments
            return None, errors.getvalue()
    raise AssertionError(f"{script} returned without parsing its arguments")


COMMANDS = _commands()


def test_docs_show_commands() -> None:
    """The extraction works: the README's quick start and the docs pages yield commands."""
    shown = {cmd[0] for doc, _, cmd in COMMANDS if doc.name == "README.md"}
    assert {"nmt-pipeline", "nmt-translate", "nmt-train", "nmt-evaluate"} <= shown
    assert len({doc for doc, _, _ in COMMANDS}) >= 3


@pytest.mark.parametrize(
    "doc, number, command",
    COMMANDS,
    ids=[f"{_name(doc)}:{number}:{cmd[0]}" for doc, number, cmd in COMMANDS],
)
def test_documented_command_parses(
    monkeypatch: pytest.MonkeyPatch, doc: Path, number: int, command: list[str]
) -> None:
    where = f"{_name(doc)}:{number}: {shlex.join(command)}"
    script, args = command[0], command[1:]
    assert script in SCRIPTS, f"{where}: {script} is not in pyproject's [project.scripts]"
    parsed, errors = _parse(monkeypatch, script, args)
    assert parsed is not None, f"{where}\n{errors.strip()}"
    assert not parsed.extras, f"{where}: {script} has no {' '.join(parsed.extras)}"


def _table() -> list[tuple[int, str]]:
    """The README's Commands table: (line, command cell) for each row."""
    prose = _scan(ROOT / "README.md")[0]
    return [
        (number, match.group(1).replace("\\|", "|"))
        for number, line in prose
        if (match := re.match(r"^\|\s*`(nmt-[^`]*)`\s*\|", line))
    ]


def test_commands_table_lists_every_script() -> None:
    table = _table()
    assert sorted(cell.split()[0] for _, cell in table) == sorted(SCRIPTS)
    readme = (ROOT / "README.md").read_text()
    module_form = re.search(r"`python -m nmt <([\w|]+)>`", readme)
    assert module_form, "README: the `python -m nmt <...>` line is missing"
    assert sorted(module_form.group(1).split("|")) == sorted(s[4:] for s in SCRIPTS)


@pytest.mark.parametrize("number, cell", _table(), ids=[c.split()[0] for _, c in _table()])
def test_commands_table_options_exist(
    monkeypatch: pytest.MonkeyPatch, number: int, cell: str
) -> None:
    script = cell.split()[0]
    parsed, errors = _parse(monkeypatch, script, [], parse=_only_parser)
    assert parsed is not None, errors
    # argparse has no public list of a parser's options; _actions is where they live.
    known = {option for action in parsed.parser._actions for option in action.option_strings}
    shown = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", cell))
    assert shown <= known, f"README.md:{number}: {script} has no {sorted(shown - known)}"


# --- the test command --------------------------------------------------------------------


def test_readme_test_command_is_what_ci_runs() -> None:
    prose_and_code = (ROOT / "README.md").read_text().split("\n## Tests\n", 1)
    assert len(prose_and_code) == 2, "README.md has no '## Tests' section"
    block = re.search(r"```\w*\n(.*?)```", prose_and_code[1], re.S)
    assert block, "README.md: the Tests section has no code block"
    readme_commands = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    ci_lines = {
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if not line.strip().startswith("#")
    }
    assert readme_commands == ["python -m pytest -q"], readme_commands
    assert readme_commands[0] in ci_lines, ".ci/run does not run the README's test command"


def test_readme_set_up_is_what_ci_runs() -> None:
    """The quick start's set-up line and CI's are the same script, so a green CI means a
    newcomer's set-up passes (nothing installed by CI alone)."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    setup = "scripts/setup.sh"
    assert f"source .venv/bin/activate && {setup}" in readme
    commands = [
        line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert setup in commands
    installs = [c for c in commands if "pip install" in c or "apt-get" in c]
    assert not installs, f".ci/run installs beyond the README's set-up: {installs}"
