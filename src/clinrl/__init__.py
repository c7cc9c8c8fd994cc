"""clinrl: train and verify clinical LLMs with reinforcement learning.

Two halves: ``clinrl.drg`` (MS-DRG coding from discharge summaries, SFT + GRPO) and ``clinrl.prm``
(process-supervised reward models that score every step of a clinical note).
"""

__version__ = "0.1.0"
