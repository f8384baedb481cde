"""Which candidate answer means which class: matched explicitly, never by position alone.

A dataset's classes come in folder order (``benign, malignant, normal``) while people type candidate
answers in a natural order (``Normal, Benign, Malignant``); pairing them by position scores "Normal"
as the answer for benign, and every P_final is wrong with exit 0. So candidates are given either
- as a mapping ``class -> answer`` (``--candidates benign=Benign,normal=Normal,...``; the only way
  to give answers that name no class, such as ``Yes``/``No``), or
- as a plain list whose answers each name one class (compared case-insensitively, ignoring spaces
  and punctuation around them), in any order.
Either way the result is one answer per class, in class order (``answers[i]`` means
``class_names[i]``), which is how the store records it. An answer that names a *different* class than
the one it is paired with is an error, as is a list that leaves a class without an answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from layerprobe.errors import ExtractError, LayerprobeError

Candidates = Mapping[str, str] | Sequence[str]
"""What a user or a recipe gives: a ``class -> answer`` mapping, or answers that name the classes."""


def normalise(text: str) -> str:
    """The comparison key of a class name or an answer: lower case, outer spaces and punctuation dropped."""
    return text.strip().strip(".,;:!?'\"()[]").strip().casefold()


def as_candidates(given: Candidates, error: type[LayerprobeError] = ExtractError) -> tuple[str, ...] | dict[str, str]:
    """``given`` as a config holds it (a tuple, or a dict copy), with at least two distinct answers."""
    value = dict(given) if isinstance(given, Mapping) else tuple(given)
    answers = list(value.values()) if isinstance(value, dict) else list(value)
    if len(answers) < 2 or len(set(answers)) != len(answers):
        raise error(f"candidates {value} must be at least two distinct answers, one per class")
    return value


def match_candidates(class_names: Sequence[str], given: Candidates, error: type[LayerprobeError] = ExtractError) -> tuple[str, ...]:
    """One answer per class, in ``class_names`` order (see the module docstring); problems raise ``error``."""
    try:
        return _match(class_names, given)
    except ExtractError as err:
        if error is ExtractError:
            raise
        raise error(str(err)) from None


def _match(class_names: Sequence[str], given: Candidates) -> tuple[str, ...]:
    keys = {normalise(c): c for c in class_names}
    if isinstance(given, Mapping):
        return _from_mapping(class_names, keys, given)
    answers = list(given)
    by_class: dict[str, str] = {}
    for answer in answers:
        named = keys.get(normalise(answer))
        if named is None:
            raise ExtractError(
                f"candidate {answer!r} names none of the classes ({', '.join(class_names)}); say which class each answer means, "
                f"e.g. --candidates '{_example(class_names, answers)}'"
            )
        if named in by_class:
            raise ExtractError(f"candidates {by_class[named]!r} and {answer!r} both name class {named!r}; give one answer per class")
        by_class[named] = answer
    return _complete(class_names, by_class)


def _from_mapping(class_names: Sequence[str], keys: dict[str, str], given: Mapping[str, str]) -> tuple[str, ...]:
    by_class: dict[str, str] = {}
    for cls, answer in given.items():
        named = keys.get(normalise(cls))
        if named is None:
            raise ExtractError(f"candidate mapping names class {cls!r}, which the dataset does not have ({', '.join(class_names)})")
        if named in by_class:
            raise ExtractError(f"candidate mapping gives class {named!r} twice; give one answer per class")
        other = keys.get(normalise(answer))
        if other is not None and other != named:
            raise ExtractError(f"candidate {answer!r} is given for class {named!r} but names class {other!r}; fix the mapping")
        by_class[named] = answer
    return _complete(class_names, by_class)


def _complete(class_names: Sequence[str], by_class: dict[str, str]) -> tuple[str, ...]:
    missing = [c for c in class_names if c not in by_class]
    if missing:
        raise ExtractError(f"no candidate answer for class(es) {', '.join(map(repr, missing))}; give one answer per class")
    answers = tuple(by_class[c] for c in class_names)
    if len({normalise(a) for a in answers}) != len(answers):
        raise ExtractError(f"candidate answers {list(answers)} repeat; each class needs its own answer")
    return answers


def _example(class_names: Sequence[str], answers: Sequence[str]) -> str:
    shown = list(answers)[: len(class_names)] + ["..."] * max(0, len(class_names) - len(answers))
    return ",".join(f"{c}={a}" for c, a in zip(class_names, shown))


def parse_candidates(text: str) -> Candidates:
    """A ``--candidates`` value: ``A,B,..`` (answers naming the classes) or ``class=A,class=B,..``.

    All entries must be of one form; an empty entry is an error. (A JSON list or object is parsed
    by the CLI before this, for answers with commas or significant spaces.)
    """
    parts = [p for p in text.split(",")]
    if any(not p.strip() for p in parts):
        raise ExtractError(f"--candidates {text!r} has an empty entry; give A,B or class=A,class=B")
    pairs = ["=" in p for p in parts]
    if any(pairs) and not all(pairs):
        raise ExtractError(f"--candidates {text!r} mixes plain answers and class=answer pairs; use one form")
    if not any(pairs):
        return tuple(p.strip() for p in parts)
    out: dict[str, str] = {}
    for p in parts:
        cls, answer = (s.strip() for s in p.split("=", 1))
        if not cls or not answer:
            raise ExtractError(f"--candidates entry {p!r} needs a class and an answer, e.g. benign=Benign")
        if cls in out:
            raise ExtractError(f"--candidates gives class {cls!r} twice; give one answer per class")
        out[cls] = answer
    return out
