"""Parse a self-aligned completion into thoughts, cited rules and answer, and decide whether to keep it.

The filter chain follows the original where it is sound and replaces its blunt parts:
- truncation is read from the generator's finish reason, not guessed from a missing terminator, and
  a truncated answer is cut back to its last complete sentence rather than thrown away;
- exemplar leakage is measured as word n-gram overlap with the exemplar answers, instead of a
  keyword blacklist that also drops every honest answer about the weather or birthdays;
- a new turn inside the answer (role markers, the thoughts label) is caught structurally, and so is
  an answer that cites rules the way the thoughts do.
Every dropped record keeps its text and names the first check it failed.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable, Sequence

from ..chat_format import ChatFormat
from ..config import Config, ConfigError
from .prompt import answer_label, turn_markers

# Why a record is dropped, in the order the checks run.
DROP_REASONS = ("no_answer", "truncated", "empty", "too_short", "format_leak", "rules_in_answer", "exemplar_leak",
                "echoes_prompt", "no_rules_cited")

_WORD = re.compile(r"\w+", re.UNICODE)
# Sentence- or line-sized pieces for the repetition cut: text up to and including . ! ? ; or a newline.
_SEGMENT = re.compile(r"[^.!?;\n]*(?:[.!?;]+|\n+|$)")
# The end of a sentence (its closing quote or bracket included) before whitespace, or a line break.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s)|\n")
_LIST_MARKER = re.compile(r"\s*\d+[.)]")


@dataclasses.dataclass
class FilterSettings(Config):
    """Which self-aligned answers are kept; stage 01's config includes these options."""

    min_chars: int = 40  # answers shorter than this are dropped (the original: 160)
    # keep answers cut by max_new_tokens, their last partial word removed (the original kept them)
    keep_truncated: bool = False
    # thoughts and answers cut by their token limit are cut back to their last complete sentence and kept
    trim_truncated: bool = True
    leak_ngram: int = 6  # word n-gram length of the exemplar-leakage check
    leak_threshold: float = 0.3  # drop answers sharing this fraction of their n-grams with one exemplar answer
    echo_min_chars: int = 16  # drop answers repeating a prompt at least this long verbatim (0: off)
    require_cited_rules: bool = False  # drop answers whose thoughts cite no existing rule
    cut_repetition: bool = True  # cut an answer where it starts repeating an earlier sentence
    repetition_min_words: int = 4  # sentences shorter than this ("Yes.", "1.") may repeat without a cut

    def check(self) -> None:
        super().check()
        if self.leak_ngram < 1:
            raise ConfigError(f"leak_ngram: must be at least 1, got {self.leak_ngram}")
        if not 0.0 < self.leak_threshold <= 1.0:
            raise ConfigError(f"leak_threshold: must be in (0, 1], got {self.leak_threshold}")


def split_completion(text: str, name: str) -> tuple[str, str | None]:
    """(thoughts, answer) of a completion that starts right after "<name> (internal thoughts):"."""
    thoughts, sep, answer = text.partition(f"\n{answer_label(name)}")
    return thoughts.strip(), (answer.strip() if sep else None)


def cut_repetition(answer: str, min_words: int) -> str:
    """Cut the answer before the first sentence or line that repeats an earlier one (a small
    base model's looping). Short pieces like list numbers or "Yes." are allowed to repeat."""
    seen: set[str] = set()
    end = 0
    for m in _SEGMENT.finditer(answer):
        piece = m.group(0)
        if not piece:
            break
        words = _WORD.findall(piece.lower())
        key = " ".join(words)
        if len(words) >= min_words:
            if key in seen:
                return answer[:end].rstrip()
            seen.add(key)
        end = m.end()
    return answer


def trim_to_sentence(text: str) -> str:
    """`text` up to the end of its last complete sentence or line ("" when there is none): what is
    left of an answer the token limit cut in the middle of a sentence."""
    for m in reversed(list(_SENTENCE_END.finditer(text))):
        line = text[text.rfind("\n", 0, m.start()) + 1:m.end()]
        if not _LIST_MARKER.fullmatch(line):  # "3." opening a list item ends nothing
            return text[:m.end()].rstrip()
    return ""


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


class LeakDetector:
    """Fraction of an answer's word n-grams found in the most similar exemplar answer."""

    def __init__(self, exemplar_answers: Iterable[str], n: int):
        self.n = n
        self.exemplars = [g for g in (ngrams(a, n) for a in exemplar_answers) if g]

    def overlap(self, answer: str) -> float:
        grams = ngrams(answer, self.n)
        if not grams or not self.exemplars:
            return 0.0
        return max(len(grams & ex) / len(grams) for ex in self.exemplars)


@dataclasses.dataclass
class Verdict:
    thoughts: str
    cited_rules: list[int]
    response: str
    kept: bool
    drop_reason: str | None
    edits: list[str]
    leak_overlap: float


class SelfAlignFilter:
    """Parse and filter completions for one prompt layout (format, name, exemplars)."""

    def __init__(self, settings: FilterSettings, fmt: ChatFormat, name: str, exemplar_answers: Sequence[str],
                 cited_rules: Callable[[str], list[int]]):
        self.s = settings
        self.name = name
        self.markers = turn_markers(fmt, name)
        self.leaks = LeakDetector(exemplar_answers, settings.leak_ngram)
        self.cited_rules = cited_rules

    def __call__(self, prompt: str, text: str, finish_reason: str) -> Verdict:
        thoughts, answer = split_completion(text, self.name)
        cited = self.cited_rules(thoughts)
        edits: list[str] = []
        response = answer or ""
        if answer is not None and self.s.cut_repetition:
            cut = cut_repetition(response, self.s.repetition_min_words)
            if cut != response:
                edits.append("repetition_cut")
                response = cut
        if answer is not None and finish_reason == "length" and "repetition_cut" not in edits:
            if self.s.keep_truncated:  # the last word may be cut in the middle
                response = response.rsplit(None, 1)[0] if " " in response else response
                edits.append("partial_word_removed")
            elif self.s.trim_truncated and (trimmed := trim_to_sentence(response)):
                response = trimmed
                edits.append("trimmed_to_sentence")
        overlap = self.leaks.overlap(response)
        reason = self._first_failure(prompt, answer, response, finish_reason, cited, edits, overlap)
        return Verdict(thoughts, cited, response, reason is None, reason, edits, round(overlap, 4))

    def _first_failure(self, prompt, answer, response, finish_reason, cited, edits, overlap) -> str | None:
        if answer is None:
            return "no_answer"
        # A repetition cut ends a looping answer, so hitting the token limit no longer matters.
        if finish_reason == "length" and not set(edits) & {"repetition_cut", "partial_word_removed",
                                                            "trimmed_to_sentence"}:
            return "truncated"
        if not response:
            return "empty"
        if len(response) < self.s.min_chars:
            return "too_short"
        if any(m in response for m in self.markers):
            return "format_leak"
        # The rules belong in the private thoughts; an answer that recites them would teach the
        # engraved model to talk about its rules to the user.
        if self.cited_rules(response):
            return "rules_in_answer"
        if overlap >= self.s.leak_threshold:
            return "exemplar_leak"
        p = prompt.strip()
        if self.s.echo_min_chars and len(p) >= self.s.echo_min_chars and p in response:
            return "echoes_prompt"
        if self.s.require_cited_rules and not cited:
            return "no_rules_cited"
        return None
