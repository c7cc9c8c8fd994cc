"""GRPO of a note writer with a PRM as the reward, end to end on CPU with small local models (issue 10).

    python benchmarks/notes_prm_rl.py [--out runs/notes_prm_rl] [--grpo-steps 100] [--setup-only]

1. Dialogues: the bundled gold notes, split 90/10 by case (:mod:`clinrl.notes.dialogues`).
2. PRM: the tiny causal-LM PRM (random-init 2-layer, 64-wide Qwen2, prm/tiny_causal's shape),
   trained 2 epochs on a random 600 of the *train-side* gold notes and their rule-based error samples (one
   per gold note); stored default aggregation ``mean``. Sanity figure: on held-out cases, how often it
   scores the gold note above a synthesized error sample of it.
3. Starting policy: a random-init 2-layer, 128-wide Qwen2 with a byte-level BPE tokenizer trained on the train
   side, given a short SFT (TRL, 2 epochs) on train-side gold A&P notes (dialogue cut to 96 tokens, note
   shortened to 128 tokens by :func:`clinrl.notes.dialogues.fit_note`), so that it writes parseable notes.
4. GRPO (notes/tiny/grpo_prm via :func:`clinrl.notes.grpo.train_notes_grpo`): rewards prm (mean,
   weight 20), format, completeness, guard; G 8, 2 dialogues per step, 100 steps.
5. Held-out evaluation: ``--samples`` notes per held-out dialogue from each policy (temperature 1, the training
   temperature). Figures: mean PRM reward (guarded, absolute floor so that each note's value stands alone),
   mean raw PRM score of all notes (unguarded) and of admissible ones, the total reward (relative floor, as in
   training), guard/format/size statistics, and Best-of-N (:func:`clinrl.prm.select.best_of_n`,
   the PRM's own aggregation) over the pooled 2 × samples candidates of each dialogue: how often it picks a
   trained-policy note (chance: 0.5), plus pairwise wins.

``--setup-only`` stops after step 3 (the tiny recipe's ``model`` and ``prm`` then exist). Threads: 1 by default
(the machine is shared). The figures are printed as JSON last and written to ``<out>/figures.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

RECIPE = REPO / "src" / "clinrl" / "recipes" / "notes" / "tiny" / "grpo_prm.yaml"
DIALOGUE_TOKENS = 96
NOTE_TOKENS = 128


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ stages
def build_prm(train_cases, out: Path, args) -> dict:
    from clinrl.prm.schema import save_notes
    from clinrl.prm.train import PRMTrainConfig, train_prm

    gold = out / "prm_train_gold.json.gz"
    save_notes([c.reference for c in train_cases], gold)
    cfg = PRMTrainConfig(
        output_dir=str(out / "prm"), model="tiny:qwen2", head="causal-lm", objective="prm",
        loss_mode="special_token", tokens="new", data=[str(gold)], synthesize=1, synth_seed=args.seed,
        max_notes=args.prm_notes, max_length=1024, num_threads=args.threads, score_aggregate="mean",
        seed=args.seed, progress=False,
        training=dict(learning_rate=1e-3, num_train_epochs=args.prm_epochs, per_device_train_batch_size=4,
                      warmup_steps=5, save_steps=0, logging_steps=20),
    )  # fmt: skip
    result = train_prm(cfg)
    return {"notes": result.notes, "steps": result.steps, "seconds": result.seconds, "final_loss": result.losses[-1][1]}


def prm_sanity(held_cases, prm_dir: Path, seed: int) -> dict:
    """Held-out gold vs one synthesized error sample of it: share where the PRM (mean) prefers the gold."""
    from clinrl.prm.score import load_scorer
    from clinrl.prm.synth.inject import synthesize_errors

    scorer = load_scorer(prm_dir)
    golds = [c.reference for c in held_cases]
    errors = synthesize_errors(golds, 1, seed=seed, pool=golds)
    by_case = {e.case_id: e for e in errors}
    wins = n = 0
    for gold in golds:
        err = by_case.get(gold.case_id)
        if err is None:
            continue
        g, e = scorer.score_notes([gold, err], gold.dialogue)
        wins += g.score("mean") > e.score("mean")
        n += 1
    return {"heldout_gold_beats_error": round(wins / max(n, 1), 3), "pairs": n}


def build_policy(train_cases, out: Path, args) -> dict:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from clinrl.llm.tiny import TinyModelConfig, build_tiny_model, train_tokenizer
    from clinrl.notes.dialogues import FORMAT_INSTRUCTION, render_note, sft_rows
    from clinrl.prm.format import PROMPT

    started = time.monotonic()
    texts = [c.dialogue[:3000] for c in train_cases[:400]] + [render_note(c.reference) for c in train_cases]
    texts += [f"{PROMPT} {FORMAT_INSTRUCTION}"] * 20
    tokenizer = train_tokenizer(texts, vocab_size=2048)
    base = out / "policy_base"
    build_tiny_model(
        tokenizer,
        TinyModelConfig(
            hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=256, seed=args.seed
        ),
        out=base,
    )
    rows = sft_rows(train_cases, tokenizer, DIALOGUE_TOKENS, NOTE_TOKENS)
    sft_out = out / "policy_sft"
    sft_args = SFTConfig(
        output_dir=str(out / "sft_run"), max_length=384, per_device_train_batch_size=8, learning_rate=2e-3,
        num_train_epochs=args.sft_epochs, lr_scheduler_type="cosine", warmup_steps=10, logging_steps=25,
        save_strategy="no", report_to="none", use_cpu=True, bf16=False, dataloader_pin_memory=False,
        completion_only_loss=True, seed=args.seed, disable_tqdm=True,
    )  # fmt: skip
    torch.set_num_threads(args.threads)
    trainer = SFTTrainer(
        model=str(base), args=sft_args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    result = trainer.train()
    trainer.save_model(str(sft_out))
    tokenizer.save_pretrained(str(sft_out))
    return {"rows": len(rows), "steps": trainer.state.global_step, "final_loss": round(result.training_loss, 4),
            "seconds": round(time.monotonic() - started, 1)}  # fmt: skip


def run_grpo(out: Path, args) -> dict:
    from transformers import TrainerCallback

    from clinrl.notes.grpo import load_notes_grpo_config, train_notes_grpo

    logged: list[dict] = []

    class Keep(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kwargs):
            if logs and "reward" in logs:
                logged.append(
                    {k: round(float(v), 4) for k, v in logs.items() if k.startswith("reward")}
                    | {"step": state.global_step}
                )

    overrides = {
        "model": str(out / "policy_sft"), "prm": str(out / "prm"), "output_dir": str(out / "grpo"),
        "split_seed": args.seed, "training.max_steps": args.grpo_steps, "seed": args.seed, "training.disable_tqdm": True,
    }  # fmt: skip
    cfg = load_notes_grpo_config(RECIPE, overrides)
    summary = train_notes_grpo(cfg, callbacks=[Keep()])
    return {"steps": summary["global_step"], "seconds": summary["seconds"], "rewards": cfg.rewards,
            "weights": cfg.reward_weights, "aggregate": cfg.aggregate, "prm_reward_counts": summary["prm_reward"],
            "train_reward_log": logged}  # fmt: skip


def sample_notes(model_dir: Path, cases, n: int, seed: int) -> list[list[str]]:
    from clinrl.llm.backends import SamplingParams, TransformersBackend
    from clinrl.llm.loading import load_causal_lm
    from clinrl.notes.dialogues import cut_dialogue, prompt_messages

    model, tokenizer = load_causal_lm(str(model_dir), dtype="float32")
    model.eval()
    prompts = [prompt_messages(cut_dialogue(c.dialogue, tokenizer, DIALOGUE_TOKENS)[0]) for c in cases]
    backend = TransformersBackend(model=model, tokenizer=tokenizer, batch_size=8)
    return backend.generate(prompts, SamplingParams(n=n, temperature=1.0, max_new_tokens=NOTE_TOKENS, seed=seed))


def evaluate(cases, start: list[list[str]], trained: list[list[str]], prm_dir: Path, cfg) -> dict:
    from dataclasses import replace

    from clinrl.notes.rewards import PRMNoteReward, build_reward
    from clinrl.prm.score import ScoreConfig, load_scorer
    from clinrl.prm.select import best_of_n

    scorer = load_scorer(prm_dir, ScoreConfig(fast=True))
    # the absolute floor: a per-note figure that does not depend on the other samples
    prm = PRMNoteReward(scorer, cfg.aggregate, replace(cfg.guards, floor="absolute"))
    as_trained = PRMNoteReward(scorer, cfg.aggregate, cfg.guards)  # the training reward (relative floor)
    others = [build_reward(name, guards=cfg.guards) for name in cfg.rewards if name != "prm"]
    weights = dict(zip(cfg.rewards, cfg.reward_weights or [1.0] * len(cfg.rewards)))

    def figures(notes: list[list[str]]) -> tuple[dict, list[float]]:
        flat, columns = [], {"dialogue": [], "ref_problems": [], "ref_steps": [], "ref_words": [], "ref_headers": []}
        for case, group in zip(cases, notes):
            for text in group:
                flat.append(text)
                for key, value in {"dialogue": case.dialogue, **case.stats}.items():
                    columns[key].append(value)
        guarded = prm(flat, **columns)
        parts = {fn.__name__: fn(flat, **columns) for fn in others}
        relative = as_trained(flat, **columns)  # per dialogue: this policy's samples form the group
        total = [weights["prm"] * g + sum(weights[k] * v[i] for k, v in parts.items()) for i, g in enumerate(relative)]
        from clinrl.notes.rewards import Reference, check_note

        checks = [check_note(t, d, Reference(p, s, w, tuple(h)), cfg.guards) for t, d, p, s, w, h in zip(
            flat, columns["dialogue"], columns["ref_problems"], columns["ref_steps"], columns["ref_words"],
            columns["ref_headers"])]  # fmt: skip
        raw = [g for g, c in zip(guarded, checks) if c.admissible]
        per_dialogue = [
            statistics.mean(guarded[i : i + len(g)]) for i, g in zip(range(0, len(flat), len(notes[0])), notes)
        ]
        out = {
            "prm_reward_mean": round(statistics.mean(guarded), 4),
            "prm_score_admissible_mean": round(statistics.mean(raw), 4) if raw else None,
            "total_reward_mean": round(statistics.mean(total), 4),
            "admissible_rate": round(sum(c.admissible for c in checks) / len(checks), 4),
            "format_mean": round(statistics.mean(parts.get("format", [0.0])), 4),
            "completeness_mean": round(statistics.mean(parts.get("completeness", [0.0])), 4),
            "problems_mean": round(statistics.mean(len(c.note.problems) for c in checks), 2),
            "steps_mean": round(statistics.mean(c.note.n_steps for c in checks), 2),
            "words_mean": round(statistics.mean(c.words for c in checks), 1),
            "violations": {v: sum(v in c.violations for c in checks) for v in sorted({v for c in checks for v in c.violations})},
        }  # fmt: skip
        return out, per_dialogue, guarded

    start_fig, start_dialogue, start_guarded = figures(start)
    trained_fig, trained_dialogue, trained_guarded = figures(trained)
    picks = guarded_picks = pair_wins = pairs = 0
    k = len(start[0])
    raw: dict[str, list[float]] = {"start": [], "trained": []}
    for j, (case, a, b) in enumerate(zip(cases, start, trained)):
        ranking = best_of_n(case.dialogue, list(a) + list(b), scorer, cfg.aggregate)
        picks += ranking.best.index >= len(a)
        for e in ranking.entries:
            raw["trained" if e.index >= k else "start"].append(e.score)
        pooled = start_guarded[j * k : (j + 1) * k] + trained_guarded[j * k : (j + 1) * k]
        guarded_picks += max(range(len(pooled)), key=lambda i: (pooled[i], -i)) >= k  # ties: the start policy
        scores = {e.index: e.score for e in ranking.entries}
        for i in range(len(a)):
            pairs += 1
            pair_wins += scores[len(a) + i] > scores[i]
    improved = sum(t > s for s, t in zip(start_dialogue, trained_dialogue))
    start_fig["prm_score_unguarded_mean"] = round(statistics.mean(raw["start"]), 4)
    trained_fig["prm_score_unguarded_mean"] = round(statistics.mean(raw["trained"]), 4)
    return {
        "start_policy": start_fig,
        "trained_policy": trained_fig,
        "prm_reward_gain": round(trained_fig["prm_reward_mean"] - start_fig["prm_reward_mean"], 4),
        "dialogues_improved": f"{improved}/{len(cases)}",
        "best_of_n": {
            "n_candidates": 2 * len(start[0]),
            "aggregate": cfg.aggregate,
            "trained_picked_rate": round(picks / len(cases), 4),
            "chance": 0.5,
            "trained_picked_rate_guarded": round(guarded_picks / len(cases), 4),
            "pairwise_trained_wins": round(pair_wins / max(pairs, 1), 4),
        },  # fmt: skip
    }


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "notes_prm_rl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prm-notes", type=int, default=600, help="PRM training notes (gold + errors, train side)")
    parser.add_argument("--prm-epochs", type=float, default=2.0)
    parser.add_argument("--sft-epochs", type=float, default=2.0)
    parser.add_argument("--grpo-steps", type=int, default=100)
    parser.add_argument(
        "--eval-dialogues", type=int, default=111, help="held-out dialogues evaluated (all 111 by default)"
    )
    parser.add_argument("--samples", type=int, default=4, help="notes per held-out dialogue and policy")
    parser.add_argument("--setup-only", action="store_true", help="build the PRM and the SFT policy, then stop")
    parser.add_argument("--reuse", action="store_true", help="reuse an existing PRM and SFT policy in --out")
    args = parser.parse_args(argv)

    import torch

    from clinrl.notes.dialogues import load_dialogues, split_dialogues
    from clinrl.notes.grpo import load_notes_grpo_config

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.monotonic()

    cases, skipped = load_dialogues()
    split = split_dialogues(cases, 0.1, args.seed, skipped)
    log(f"dialogues: {split.report['train']} train / {split.report['held_out']} held out")
    figures: dict = {"date": "2026-11-26", "machine": "2-core CPU", "threads": args.threads,
                     "split": {k: split.report[k] for k in ("train", "held_out")}}  # fmt: skip

    reuse = args.reuse and (out / "prm" / "clinrl_prm.json").is_file() and (out / "policy_sft").is_dir()
    if not reuse:
        t = time.monotonic()
        log("training the PRM")
        figures["prm"] = build_prm(split.train, out, args)
        timings["prm"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        log("SFT of the starting policy")
        figures["sft"] = build_policy(split.train, out, args)
        timings["sft"] = round(time.monotonic() - t, 1)
    figures["prm_sanity"] = prm_sanity(split.held_out, out / "prm", args.seed)
    if args.setup_only:
        figures["timings_s"] = timings
        print(json.dumps(figures))
        return figures

    import shutil

    shutil.rmtree(out / "grpo", ignore_errors=True)
    t = time.monotonic()
    log(f"GRPO, {args.grpo_steps} steps")
    figures["grpo"] = run_grpo(out, args)
    timings["grpo"] = round(time.monotonic() - t, 1)

    t = time.monotonic()
    held = split.held_out[: args.eval_dialogues]
    log(f"sampling {args.samples} notes x {len(held)} held-out dialogues per policy")
    start = sample_notes(out / "policy_sft", held, args.samples, args.seed + 1)
    trained = sample_notes(out / "grpo", held, args.samples, args.seed + 1)
    cfg = load_notes_grpo_config(RECIPE, {"model": "-", "prm": "-", "output_dir": "-"})
    figures["heldout"] = {"dialogues": len(held), "samples_per_policy": args.samples,
                          **evaluate(held, start, trained, out / "prm", cfg)}  # fmt: skip
    timings["eval"] = round(time.monotonic() - t, 1)
    timings["total"] = round(time.monotonic() - clock, 1)
    figures["timings_s"] = timings
    from clinrl.io import write_json_atomic

    write_json_atomic(out / "figures.json", figures)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
