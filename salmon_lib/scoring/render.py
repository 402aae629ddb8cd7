"""The inputs of every likelihood score: a principle as the system prompt, and the answer as the
continuation whose log-probability is read.

An answer that ended with its end-of-turn token is scored with that token, so a principle that
changes how long the model would write changes the probability of stopping where the answer
stopped. An answer cut at the token limit never produced that token and is scored without it:
appending it would credit a cut answer with a decision to stop that it never made (and teach a
policy trained on the score to stop abruptly at the limit).
"""

from __future__ import annotations

from ..chat_format import ChatFormat

PRINCIPLE_SYSTEM = "You are an AI assistant. Write your reply so that it fits this description: {text}"
# The principle prompt without a principle: the contrast "principle against none" then differs
# from the principle prompt in the principle text alone, not in having a system turn at all.
NEUTRAL_SYSTEM = "You are an AI assistant."
# The contrast for a principle whose negation nobody wrote: the same text, asked to be avoided.
AVOID_SENTENCE = "Write your reply so that it does not fit this description: {text}"


def principle_system(text: str | None) -> str | None:
    """The system prompt that asks for `text` (whitespace collapsed); None without a text."""
    return PRINCIPLE_SYSTEM.format(text=" ".join(text.split())) if text and text.strip() else None


def principle_prompt(fmt: ChatFormat, request: str, text: str | None) -> str:
    """The request under `text` as system prompt (no system turn without a text)."""
    return fmt.prompt(request.strip(), system=principle_system(text))


def neutral_prompt(fmt: ChatFormat, request: str) -> str:
    """The request under the principle prompt's frame with no principle in it."""
    return fmt.prompt(request.strip(), system=NEUTRAL_SYSTEM)


def contrast_system(kept: str | None, avoided: str | None) -> str:
    """The contrast prompt's system text: `kept` (known negations, interventions) asked for as in
    `principle_system`, then `avoided` (principles without a known negation) asked to be avoided."""
    parts = [principle_system(kept) or NEUTRAL_SYSTEM]
    if avoided and avoided.strip():
        parts.append(AVOID_SENTENCE.format(text=" ".join(avoided.split())))
    return " ".join(parts)


def scored_answer(fmt: ChatFormat, response: str, finished: bool = True) -> str:
    """The continuation to score: the answer, with the turn's end only if the answer ended there."""
    return response.strip() + (fmt.end if finished else "")
