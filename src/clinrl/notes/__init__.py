"""Clinical-note generation trained with RL, rewarded by a process-supervised reward model (issue 10).

- :mod:`clinrl.notes.dialogues` — dialogues of the gold notes, split train/held-out by case; prompts.
- :mod:`clinrl.notes.rewards` — TRL reward callables: PRM note score, format, completeness, guards.
- :mod:`clinrl.notes.grpo` — the recipe dataclass and the GRPO trainer wiring (``clinrl notes grpo``).
"""
