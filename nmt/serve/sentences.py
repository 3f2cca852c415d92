"""Sentences of a request: the rules of the splitter the Argos export ships
(`nmt.export.sbd`), in Python, so that the server splits text as an installed `.argosmodel`
does without running its ONNX graph per request.

The character classes are `nmt.export.sbd`'s own; tests/test_serve.py checks this function
against that ONNX graph. A sentence ends after a token (a run of non-space characters) that
ends with `.`, `!`, `?` or `…`, or with one of them and one closing quote or bracket, unless
the character after the following whitespace is a lower-case letter. Line breaks are kept:
a text is split into lines first, and `join` puts the translated lines back together.
"""

from __future__ import annotations

from nmt.export.sbd import CLOSERS, LOWER, TERMINALS

_TERMINALS, _CLOSERS, _LOWER = frozenset(TERMINALS), frozenset(CLOSERS), frozenset(LOWER)


def split_sentences(text: str) -> list[str]:
    """The sentences of one line of text, stripped; none for a blank line."""
    sentences, start, n = [], 0, len(text)
    for t, ch in enumerate(text):
        if ch.isspace() or (t + 1 < n and not text[t + 1].isspace()):
            continue  # not the last character of a token
        final = ch in _TERMINALS or (ch in _CLOSERS and t > 0 and text[t - 1] in _TERMINALS)
        if final and not (t + 2 < n and text[t + 2] in _LOWER):
            sentences.append(text[start : t + 1].strip())
            start = t + 1
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def split(text: str) -> tuple[list[str], list[int]]:
    """(the sentences of `text`, how many each of its lines has): what `join` needs to put
    their translations back into lines."""
    sentences, counts = [], []
    for line in text.splitlines() or [""]:
        found = split_sentences(line)
        sentences += found
        counts.append(len(found))
    return sentences, counts


def join(translations: list[str], counts: list[int]) -> str:
    """The translated text: each line's sentences joined by a space, lines by newlines."""
    lines, i = [], 0
    for count in counts:
        lines.append(" ".join(translations[i : i + count]))
        i += count
    return "\n".join(lines)
