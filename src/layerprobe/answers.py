"""Which candidate a generated answer names: the parser behind P_final by generation.

The paper scores the model's generated text against the candidate answers. A generated answer
counts as candidate ``i`` when it names candidate ``i`` and no other; anything else is *unparsed*
(``None``) and counts as wrong. Rules, in order:
- Comparison ignores case and is made on whole words: ``"malignant."`` names ``Malignant``, but
  ``"yesterday"`` does not name ``Yes``. Punctuation and surrounding words do not matter
  (``"The answer is: malignant"``). A multi-word candidate must appear as that phrase.
- Longer candidates are matched first and their words taken out, so ``"non-covid"`` is not also
  read as ``"covid"``.
- A candidate named several times is still one candidate (``"No, there is no pneumonia"``); two
  different candidates make the answer unparsed (``"Normal or benign"``), as does naming none
  (including an empty answer). Negations are not interpreted: ``"not malignant"`` names
  ``Malignant``; the paper's prompts ask for a bare answer and this keeps the rule checkable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORD.findall(text)]


def parse_answer(text: str, candidates: Sequence[str]) -> int | None:
    """Index of the one candidate ``text`` names, or ``None`` (unparsed; see the module docstring)."""
    words = _words(text)
    named: set[int] = set()
    order = sorted(range(len(candidates)), key=lambda i: -len(_words(candidates[i])))
    for i in order:
        phrase = _words(candidates[i])
        if not phrase:
            continue
        n = len(phrase)
        j = 0
        while j + n <= len(words):
            if words[j : j + n] == phrase:
                named.add(i)
                words[j : j + n] = [""] * n  # taken: a shorter candidate cannot match inside it
                j += n
            else:
                j += 1
    return named.pop() if len(named) == 1 else None
