"""A scripted teacher for the CoT-distillation tests: answers depend on the course number in the prompt.

Course ``i`` (``"Synthetic course {i}: …"``): i % 4 == 0 → valid at once; 1 → malformed, then valid;
2 → always malformed; 3 → always a wrong (but real) DRG. Used both as a fake GenerationBackend and behind
a loopback OpenAI-compatible endpoint.
"""

from __future__ import annotations

import re
from collections import Counter

_COURSE = re.compile(r"Synthetic course (\d+):")
_GOLD = re.compile(r"the MS-DRG of this hospitalization is\n(.+)\n")


def scripted_answer(prompt_text: str, seen: Counter) -> str:
    """The teacher's answer to one prompt; ``seen`` counts earlier prompts per course."""
    course = int(_COURSE.search(prompt_text).group(1))
    gold = _GOLD.search(prompt_text).group(1).strip()
    seen[course] += 1
    kind = course % 4
    if kind == 0 or (kind == 1 and seen[course] > 1):
        return f"<think>The course shows the principal diagnosis; severity follows.</think>\n<answer>{gold}</answer>"
    if kind == 3:
        wrong = (
            "HEART FAILURE AND SHOCK WITH MCC"
            if "HEART FAILURE" not in gold
            else "SEPTICEMIA OR SEVERE SEPSIS WITHOUT MV >96 HOURS WITH MCC"
        )
        return f"<think>Maybe this.</think><answer>{wrong}</answer>"
    return "I think it is " + gold  # no tags: malformed


def prompt_text(prompt) -> str:
    return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)


class ScriptedTeacher:
    """A GenerationBackend answering with :func:`scripted_answer`; counts prompts."""

    name = "scripted"

    def __init__(self, fail_after: int | None = None, exc: type[BaseException] = KeyboardInterrupt):
        self.seen: Counter = Counter()
        self.prompts = 0
        self.calls = 0
        self.fail_after, self.exc = fail_after, exc

    def generate(self, prompts, params):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise self.exc("scripted interruption")
        self.calls += 1
        self.prompts += len(prompts)
        return [[scripted_answer(prompt_text(p), self.seen)] * params.n for p in prompts]
