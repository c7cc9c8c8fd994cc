"""A generative verifier ("judge"): a language model asked Yes/No about each label slot of a note, used
wherever a PRM is (:class:`JudgeScorer` answers like :class:`clinrl.prm.score.PRMScorer`).

For every label slot of a note (:func:`clinrl.prm.score.slot_layout`) the judge gets one question
(:func:`slot_prompts`, the template :data:`PROMPT_TEMPLATE`) and P(+) is read from the **first generated
token**: P(+) = p(yes) / (p(yes) + p(no)) over that token's top-k alternatives, where a token counts as
yes/no after stripping spaces and lower-casing (" Yes", "yes", "YES" are summed). When neither is among the
top-k, P(+) = 0.5 and ``stats["no_verdict"]`` counts it (:func:`verdict_probability`).

Where the model runs (:class:`JudgeConfig`):

- an **OpenAI-compatible endpoint** (a vLLM server, ``clinrl serve``, a hosted model) through
  :class:`clinrl.llm.openai_client.OpenAIBackend` (its retries, concurrency bound, key from the environment,
  errors without prompt text): ``completions`` (``/v1/completions``, ``logprobs: k``, the prompt ends in
  "Answer:") or ``chat`` (``/v1/chat/completions``, ``logprobs: true, top_logprobs: k``);
- a **local causal LM folder** (transformers): left-padded batches, next-token softmax, the same top-k
  read-out; ``chat`` renders the tokenizer's chat template, ``completions`` the plain prompt.

Each note is judged on its own: a question holds the dialogue and that note's own text only (never another
candidate). Identical questions (a step that an error sample shares with its gold note, with the same earlier
steps) are asked once per run; the answer is the same at temperature 0.

The answers are cached in ``cache_dir/answers.jsonl``, one line per question, keyed by a SHA-256 of (where the
model runs, model, api, prompt, generation settings), appended as answers arrive: a re-run asks nothing it
has answered, and an interrupted run loses only the questions in flight. Keys are never written.

The endpoint receives dialogue and note text: point it only where the data's licence allows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from clinrl.errors import ClinrlError, DataError
from clinrl.io import cut_torn_line, read_jsonl, write_json_atomic
from clinrl.prm.format import SpecialTokens
from clinrl.prm.schema import Note, Problem
from clinrl.prm.score import NoteScore, SlotScore, group_by_dialogue, slot_layout

__all__ = [
    "APIS",
    "JUDGE_FILE",
    "PROMPT_TEMPLATE",
    "JudgeCache",
    "JudgeConfig",
    "JudgeNoteScore",
    "JudgeScorer",
    "is_judge_folder",
    "load_judge",
    "slot_prompts",
    "verdict_probability",
    "write_judge_folder",
]

log = logging.getLogger(__name__)

JUDGE_FILE = "clinrl_judge.json"
CACHE_FILE = "answers.jsonl"
CACHE_VERSION = 1
APIS = ("auto", "completions", "chat")
MAX_TOP_LOGPROBS = 20  # OpenAI's cap on top_logprobs, and vLLM's and clinrl serve's default limit

# ------------------------------------------------------------------------------------------ prompts
# One template for every question. The dialogue comes first, so that a server's prefix cache shares it
# across every slot of every candidate of a case; what changes per slot (the part of the note to check and
# the question) comes after it. With the completions api the prompt ends in "Answer:" so that the next token
# is the verdict (" Yes"/" No"); with the chat api the assistant's reply starts with it.
PROMPT_TEMPLATE = (
    "You review an Assessment & Plan note that a clinician wrote from a doctor-patient dialogue.\n\n"
    "Dialogue:\n{dialogue}\n\n"
    "{context}\n\n"
    "Question: {question}\n"
    "{instruction}"
)
INSTRUCTION = "Answer Yes or No."
INSTRUCTION_WHY = "Answer Yes or No, then give one sentence why."
COMPLETION_CUE = "\nAnswer:"

QUESTIONS = {
    "problem": "Is this statement supported by the dialogue, accurate, and useful for this problem?",
    "step": "Is this statement supported by the dialogue, accurate, and useful for this problem?",
    "problem_completeness": "Does the plan for this problem cover what the dialogue says about it?",
    "note_completeness": "Does the note cover every problem the dialogue discusses?",
    "end_of_note": "Is the whole note correct and complete?",
}


def _plan(problem: Problem, upto: int | None = None) -> str:
    """A problem's steps as a bulleted list (the first ``upto`` only), or "(no steps)"."""
    steps = problem.steps if upto is None else problem.steps[:upto]
    return "\n".join(f"- {s.text}" for s in steps) or "(no steps)"


def _whole_note(note: Note) -> str:
    return "\n\n".join(f"Problem {i + 1}: {p.header}\n{_plan(p)}" for i, p in enumerate(note.problems))


def _slot_context(note: Note, slot: dict[str, Any]) -> str:
    """What the judge sees of the note for one slot: a header or step with its problem's header and the
    earlier steps (what a causal PRM has seen at that slot, minus other problems), a problem's whole plan
    (its completeness), or the whole note (note completeness, end of note)."""
    kind = slot["kind"]
    if kind in ("note_completeness", "end_of_note"):
        return f"The note:\n{_whole_note(note)}"
    problem = note.problems[slot["problem"]]
    if kind == "problem":
        return f"Problem header to check:\n{problem.header}"
    if kind == "problem_completeness":
        return f"Problem: {problem.header}\nIts plan:\n{_plan(problem)}"
    j = slot["step"]
    earlier = f"Earlier steps of its plan:\n{_plan(problem, j)}\n" if j else ""
    return (
        f"Problem: {problem.header}\n{earlier}Statement to check (step {j + 1} of the plan):\n{problem.steps[j].text}"
    )


def slot_prompts(note: Note, *, rationale: bool = False, chat: bool = False) -> list[str]:
    """One question per label slot of ``note``, in :func:`~clinrl.prm.score.slot_layout` order (the user
    message with ``chat``; else the completion prompt, ending in "Answer:")."""
    instruction = INSTRUCTION_WHY if rationale else INSTRUCTION
    out = []
    for slot in slot_layout(note):
        text = PROMPT_TEMPLATE.format(dialogue=note.dialogue, context=_slot_context(note, slot),
                                      question=QUESTIONS[slot["kind"]], instruction=instruction)  # fmt: skip
        out.append(text if chat else text + COMPLETION_CUE)
    return out


# ------------------------------------------------------------------------------------------ verdicts
def _verdict_word(token: str) -> str | None:
    word = token.strip().lower()
    return word if word in ("yes", "no") else None


def verdict_probability(top: Iterable[tuple[str, float]]) -> float | None:
    """P(+) = p(yes) / (p(yes) + p(no)) from the verdict token's top alternatives ``(token text, log prob)``;
    every spelling that is "yes"/"no" once spaces are stripped and case folded counts, summed. None when
    neither is among them (the caller counts it and uses 0.5)."""
    mass = {"yes": 0.0, "no": 0.0}
    for token, logprob in top:
        word = _verdict_word(token)
        if word is not None and logprob is not None:
            mass[word] += math.exp(logprob)
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None


def _top_completions(choice: dict) -> list[tuple[str, float]] | None:
    """The first token's alternatives in a /v1/completions choice (legacy ``logprobs.top_logprobs``: a list
    of ``{text: logprob}`` per token); [] when no token came back; None when the answer has no logprobs."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("top_logprobs"), list):
        return None
    first = logprobs["top_logprobs"][:1]
    return [(t, v) for t, v in first[0].items()] if first and isinstance(first[0], dict) else []


def _top_chat(choice: dict) -> list[tuple[str, float]] | None:
    """The first token's alternatives in a /v1/chat/completions choice (``logprobs.content[0].top_logprobs``:
    ``{token, logprob}`` objects); [] when no token came back; None when the answer has no logprobs."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return None
    content = logprobs["content"]
    if not content:
        return []
    tops = content[0].get("top_logprobs") if isinstance(content[0], dict) else None
    return [(t["token"], t["logprob"]) for t in tops or [] if isinstance(t, dict) and "token" in t]


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge runs and how it is asked (``clinrl_judge.json`` in a judge folder).

    Exactly one of ``endpoint`` (with ``served_model``, the model's name there) or ``local_model`` (a causal-LM
    folder). ``api``: ``completions``, ``chat``, or ``auto`` (endpoint: completions, which every OpenAI-style
    server with logprobs answers, ``clinrl serve`` included; local: chat when the tokenizer has a template).
    ``api_key_env`` names the variable holding the key (never the key). ``rationale``: the judge also writes one
    sentence (``max_rationale_tokens``), kept in the cache and the scores; P(+) still comes from its first token.
    ``top_logprobs``: alternatives read at the verdict token (≤ 20). ``batch_size``/``device``: local only.
    """

    endpoint: str | None = None
    served_model: str | None = None
    local_model: str | None = None
    api: str = "auto"
    api_key_env: str = "CLINRL_API_KEY"
    concurrency: int = 8
    timeout_s: float = 120.0
    request_retries: int = 5
    cache_dir: str | None = None
    rationale: bool = False
    max_rationale_tokens: int = 64
    top_logprobs: int = MAX_TOP_LOGPROBS
    batch_size: int = 8
    device: str | None = None

    def __post_init__(self) -> None:
        if (self.endpoint is None) == (self.local_model is None):
            raise ClinrlError("a judge needs either an endpoint (with a served model name) or a local model folder")
        if self.endpoint is not None and not self.served_model:
            raise ClinrlError("a judge endpoint needs the served model's name (served_model)")
        if self.api not in APIS:
            raise ClinrlError(f"judge api must be one of {', '.join(APIS)}, got {self.api!r}")
        if not 1 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise ClinrlError(f"top_logprobs must be in 1 … {MAX_TOP_LOGPROBS}, got {self.top_logprobs}")
        if min(self.concurrency, self.batch_size, self.max_rationale_tokens) < 1 or self.request_retries < 0:
            raise ClinrlError("concurrency, batch_size and max_rationale_tokens must be ≥ 1, request_retries ≥ 0")
        if not self.timeout_s > 0:
            raise ClinrlError(f"timeout_s must be > 0, got {self.timeout_s}")

    @property
    def max_tokens(self) -> int:
        """Tokens generated per question: the verdict alone, or the verdict and a sentence."""
        return self.max_rationale_tokens if self.rationale else 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, path: Path | None = None) -> JudgeConfig:
        """A config from JSON; an unknown key, or a key where only its variable's name belongs, is refused."""
        if not isinstance(raw, dict):
            raise DataError("not a JSON object", path=path)
        if "api_key" in raw:
            raise DataError("API keys are never stored: name the environment variable (api_key_env)", path=path,
                            field="api_key")  # fmt: skip
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise DataError(f"unknown key(s) {unknown}; known: {', '.join(sorted(known))}", path=path, field=unknown[0])
        try:
            return cls(**raw)
        except ClinrlError as err:
            raise DataError(str(err), path=path) from None


def is_judge_folder(path: str | Path | None) -> bool:
    """True when ``path`` is a folder holding ``clinrl_judge.json`` (made by ``clinrl prm judge-init``)."""
    return path is not None and (Path(path) / JUDGE_FILE).is_file()


def write_judge_folder(folder: str | Path, config: JudgeConfig) -> Path:
    """Write ``folder/clinrl_judge.json``; a relative ``local_model`` is stored absolute (it must not depend on
    the directory a later command runs in). The cache goes to ``folder/cache`` unless ``cache_dir`` is set."""
    folder = Path(folder)
    raw = config.to_dict()
    if config.local_model is not None:
        raw["local_model"] = str(Path(config.local_model).resolve())
    if config.cache_dir is not None:
        raw["cache_dir"] = str(Path(config.cache_dir).resolve())
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / JUDGE_FILE, raw)
    return folder / JUDGE_FILE


def load_judge(folder: str | Path) -> JudgeScorer:
    """The :class:`JudgeScorer` of a judge folder (its cache: ``cache_dir``, else ``folder/cache``)."""
    path = Path(folder) / JUDGE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"not readable ({type(err).__name__})", path=path) from None
    except json.JSONDecodeError as err:
        raise DataError(f"not JSON ({err.msg})", path=path, row=err.lineno) from None
    config = JudgeConfig.from_dict(raw, path)
    if config.cache_dir is None:
        from dataclasses import replace

        config = replace(config, cache_dir=str(Path(folder) / "cache"))
    return JudgeScorer(config)


# ------------------------------------------------------------------------------------------ cache
class JudgeCache:
    """Answers by key in one append-only JSONL file (``answers.jsonl``); thread-safe appends, each flushed as
    it is written, so a killed run keeps every answer but the one being written (a torn last line is cut on
    the next open)."""

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / CACHE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut_torn_line(self.path)
        self._answers = {r["key"]: r for _, r in read_jsonl(self.path, torn_tail=True) if "key" in r} if (
            self.path.is_file()) else {}  # fmt: skip
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._answers.get(key)

    def put(self, key: str, record: dict[str, Any]) -> None:
        line = json.dumps({"key": key, **record}, ensure_ascii=False)
        with self._lock:
            self._answers[key] = {"key": key, **record}
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")


# ------------------------------------------------------------------------------------------ scorer
@dataclass
class JudgeNoteScore(NoteScore):
    """A :class:`~clinrl.prm.score.NoteScore` with the judge's rationale per slot (when asked for)."""

    rationales: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.rationales is not None:
            out["rationales"] = self.rationales
        return out


@dataclass
class JudgeScorer:
    """A generative verifier that scores notes like :class:`clinrl.prm.score.PRMScorer` (see the module
    docstring). ``stats`` counts ``requests`` (questions asked of the model), ``cached`` (answered from the
    cache), ``no_verdict`` (neither yes nor no among the top-k: P(+) = 0.5) and ``slots``."""

    config: JudgeConfig
    stats: Counter = field(default_factory=Counter)
    head: ClassVar[str] = "judge"
    objective: ClassVar[str] = "prm"
    # Only for callers that read PRM strings (clinrl serve's format detection): a judge reads notes, not tokens.
    tokens: SpecialTokens = field(default_factory=SpecialTokens.llama3)
    _client: Any = field(default=None, init=False, repr=False)
    _local: Any = field(default=None, init=False, repr=False)
    _cache: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.config.cache_dir is not None:
            self._cache = JudgeCache(self.config.cache_dir)

    @property
    def backend(self) -> str:
        return "openai" if self.config.endpoint is not None else "transformers"

    @property
    def default_aggregate(self) -> str:
        """``mean`` (of ln P(+)): a judge gives every sound slot a P(+) below 1, so ``sum_log`` would rank a
        note lower for each slot it has, and prefer error samples that lost steps or problems."""
        return "mean"

    @property
    def api(self) -> str:
        """The api in use: ``auto`` resolved (endpoint: completions; local: chat when the tokenizer has a
        chat template)."""
        if self.config.api != "auto":
            return self.config.api
        if self.config.endpoint is not None:
            return "completions"
        return "chat" if getattr(self._local_model()[1], "chat_template", None) else "completions"

    def score_notes(self, notes: Sequence[Note | str], dialogue: str | None = None) -> list[NoteScore]:
        """Score each note on its own: one question per label slot, P(+) from the verdict token."""
        resolved, groups = group_by_dialogue(notes, dialogue)
        chat = self.api == "chat"
        order = [i for members in groups.values() for i in members]  # a dialogue's questions together
        prompts = {i: slot_prompts(resolved[i], rationale=self.config.rationale, chat=chat) for i in order}
        answers = self._answers(list(dict.fromkeys(p for i in order for p in prompts[i])))
        out: list[NoteScore] = [None] * len(resolved)  # type: ignore[list-item]
        for i in order:
            got = [answers[p] for p in prompts[i]]
            self.stats["slots"] += len(got)
            self.stats["no_verdict"] += sum(a["p_plus"] is None for a in got)
            probs = [0.5 if a["p_plus"] is None else a["p_plus"] for a in got]
            slots = [SlotScore(index=k, p_plus=float(p), **meta)
                     for k, (meta, p) in enumerate(zip(slot_layout(resolved[i]), probs))]  # fmt: skip
            rationales = [a.get("text") or "" for a in got] if self.config.rationale else None
            out[i] = JudgeNoteScore(slots, rationales=rationales)
        return out

    def score_note(self, note: Note | str, dialogue: str | None = None) -> NoteScore:
        return self.score_notes([note], dialogue)[0]

    def close(self) -> None:
        """Close the HTTP client (a local model is simply dropped)."""
        if self._client is not None:
            self._client.close()
        self._local = None

    # ------------------------------------------------------------------ answering
    def _key(self, prompt: str) -> str:
        c = self.config
        where = {"endpoint": c.endpoint, "model": c.served_model} if c.endpoint else {"local_model": c.local_model}
        settings = {"api": self.api, "max_tokens": c.max_tokens, "top_logprobs": c.top_logprobs}
        text = json.dumps({"v": CACHE_VERSION, **where, **settings, "prompt": prompt}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _answers(self, prompts: list[str]) -> dict[str, dict[str, Any]]:
        """Each prompt's answer ``{p_plus, text}``: from the cache, else from the model (then cached)."""
        out: dict[str, dict[str, Any]] = {}
        todo = []
        for prompt in prompts:
            hit = self._cache.get(self._key(prompt)) if self._cache is not None else None
            if hit is not None:
                out[prompt] = {"p_plus": verdict_probability(hit["top"]), "text": hit.get("text")}
                self.stats["cached"] += 1
            else:
                todo.append(prompt)
        ask = self._ask_endpoint if self.config.endpoint is not None else self._ask_local
        for prompt, top, text in ask(todo):
            self.stats["requests"] += 1
            if self._cache is not None:
                self._cache.put(self._key(prompt), {"top": top, "text": text})
            out[prompt] = {"p_plus": verdict_probability(top), "text": text}
        return out

    # ------------------------------------------------------------------ endpoint
    def _http(self) -> Any:
        from clinrl.llm.openai_client import OpenAIBackend

        if self._client is None:
            c = self.config
            self._client = OpenAIBackend(endpoint=c.endpoint, model=c.served_model, api_key_env=c.api_key_env,
                                         max_concurrency=c.concurrency, timeout_s=c.timeout_s,
                                         max_retries=c.request_retries)  # fmt: skip
        return self._client

    def _body(self, prompt: str) -> tuple[str, dict[str, Any]]:
        """(route, body) of one question: greedy, ``max_tokens`` of :attr:`JudgeConfig.max_tokens`, top-k."""
        c = self.config
        body: dict[str, Any] = {"model": c.served_model, "temperature": 0, "max_tokens": c.max_tokens}
        if self.api == "chat":
            body.update(messages=[{"role": "user", "content": prompt}], logprobs=True, top_logprobs=c.top_logprobs)
            return "chat/completions", body
        body.update(prompt=prompt, logprobs=c.top_logprobs)
        return "completions", body

    def _ask_one(self, prompt: str) -> tuple[str, list[tuple[str, float]], str]:
        route, body = self._body(prompt)
        client = self._http()
        url = f"{client.base_url}/{route}"
        payload = client.post(route, body)
        choices = payload.get("choices") if isinstance(payload, dict) else None
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        if choice is None:
            raise ClinrlError(f"{url} returned a malformed response (no choices)")
        top = (_top_chat if route == "chat/completions" else _top_completions)(choice)
        if top is None:
            raise ClinrlError(f"{url} returned no logprobs: the judge needs an endpoint that answers with the "
                              f"verdict token's top logprobs (try the other --api)")  # fmt: skip
        message = choice.get("message") if route == "chat/completions" else None
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        return prompt, [(str(t), float(v)) for t, v in top], text if isinstance(text, str) else ""

    def _ask_endpoint(self, prompts: list[str]) -> Iterable[tuple[str, list[tuple[str, float]], str]]:
        """Answers in completion order, ``concurrency`` requests at a time; the first failure stops the run
        (answers already received are cached, so a re-run resumes) and is raised without prompt text."""
        if not prompts:
            return
        self._http()  # one client for every thread, made before they start
        pool = ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(prompts)), thread_name_prefix="judge")
        try:
            futures = [pool.submit(self._ask_one, p) for p in prompts]
            for future in as_completed(futures):
                yield future.result()
        finally:  # on an error or Ctrl-C, drop what has not started
            pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ local model
    def _local_model(self) -> tuple[Any, Any]:
        if self._local is None:
            from clinrl.llm.loading import load_causal_lm  # lazy: pulls torch

            self._local = load_causal_lm(self.config.local_model, device=self.config.device)
        return self._local

    def _encode_local(self, prompt: str) -> list[int]:
        """Token ids as a server would build them: the chat template with the generation prompt (chat), or
        the tokenizer's own special tokens around the plain prompt (completions, as vLLM does)."""
        _, tokenizer = self._local_model()
        if self.api == "chat":
            if not getattr(tokenizer, "chat_template", None):
                raise ClinrlError(f"the judge's local model {self.config.local_model} has no chat template; "
                                  f"use api 'completions'")  # fmt: skip
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)  # fmt: skip
            return list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(tokenizer(prompt)["input_ids"])

    def _ask_local(self, prompts: list[str]) -> Iterable[tuple[str, list[tuple[str, float]], str]]:
        """Answers ``batch_size`` prompts per forward pass (left-padded, positions counted from each prompt's
        first real token, so a padded prompt reads as it would alone)."""
        for start in range(0, len(prompts), self.config.batch_size):
            batch = prompts[start : start + self.config.batch_size]
            for prompt, (top, text) in zip(batch, self._local_batch([self._encode_local(p) for p in batch])):
                yield prompt, top, text

    def _local_batch(self, seqs: list[list[int]]) -> list[tuple[list[tuple[str, float]], str]]:
        import torch

        model, tokenizer = self._local_model()
        device = next(model.parameters()).device
        width = max(len(s) for s in seqs)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1, :]
        values, indices = logits.float().log_softmax(-1).topk(self.config.top_logprobs, dim=-1)
        out = []
        for row, (vs, js) in enumerate(zip(values.tolist(), indices.tolist())):
            top = [(tokenizer.decode([j]), v) for j, v in zip(js, vs)]
            text = (
                self._local_rationale(ids[row : row + 1], mask[row : row + 1]) if self.config.rationale else top[0][0]
            )
            out.append((top, text))
        return out

    def _local_rationale(self, ids: Any, mask: Any) -> str:
        """The judge's greedy answer (verdict and sentence) to one prompt."""
        model, tokenizer = self._local_model()
        keep = mask[0].bool()
        prompt = ids[:, keep]
        generated = model.generate(input_ids=prompt, attention_mask=mask[:, keep], do_sample=False,
                                   max_new_tokens=self.config.max_rationale_tokens,
                                   pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        return tokenizer.decode(generated[0, prompt.shape[1] :], skip_special_tokens=True)
