"""A small, correct evaluator for DRG policies on CPU: n sampled completions per case with
``model.generate``, scored by exact v34 match. Pass@1 = mean accuracy over all samples; Maj@n =
accuracy of the most frequent parsed answer per case (ties: the answer seen first); Pass@n = any
sample correct; format = share of samples in the strict think/answer format.

Used by the learnability benchmark; the full ``clinrl drg eval`` builds on vLLM later.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["EvalResult", "evaluate_policy", "score_samples"]


@dataclass(frozen=True)
class EvalResult:
    """Aggregate scores over ``n_cases`` cases × ``n_samples`` samples."""

    pass1: float
    maj: float
    pass_n: float
    format_ok: float
    n_cases: int
    n_samples: int

    def as_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def score_samples(samples: Sequence[Sequence[str]], golds: Sequence[str], ontology: Any = None) -> EvalResult:
    """Score ``samples[i]`` (completion texts) against gold description ``golds[i]``."""
    from clinrl.drg.ontology import load_ontology
    from clinrl.drg.prompts import parse_completion
    from clinrl.drg.rewards import match_answer

    onto = ontology or load_ontology()
    correct = maj = any_ok = fmt = total = 0
    for texts, gold in zip(samples, golds, strict=True):
        gold_code = onto.find(gold).code
        codes = []
        for text in texts:
            parsed = parse_completion(text)
            drg = match_answer(parsed.answer, onto) if parsed.format_ok else None
            codes.append(drg.code if drg is not None else None)
            fmt += parsed.format_ok
        hits = [c == gold_code for c in codes]
        correct += sum(hits)
        any_ok += any(hits)
        votes = Counter(c for c in codes if c is not None)
        maj += bool(votes) and votes.most_common(1)[0][0] == gold_code
        total += len(texts)
    n = len(golds)
    return EvalResult(correct / total, maj / n, any_ok / n, fmt / total, n, total // max(n, 1))


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[dict[str, str]]],
    golds: Sequence[str],
    *,
    n: int = 4,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int = 48,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> EvalResult:
    """Sample ``n`` completions per chat prompt (left-padded batches) and score them."""
    import torch
    from tqdm import tqdm

    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    model.eval()
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    samples: list[list[str]] = []
    for start in tqdm(range(0, len(texts), batch_size), desc="eval", disable=not progress, leave=False):
        batch = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **batch,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=tokenizer.pad_token_id,
            )
        decoded = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        samples.extend(decoded[i : i + n] for i in range(0, len(decoded), n))
    return score_samples(samples, golds)
