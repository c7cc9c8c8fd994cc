"""clinrl: train and verify clinical LLMs with reinforcement learning.

Two halves: ``clinrl.drg`` (MS-DRG coding from discharge summaries, SFT + GRPO) and ``clinrl.prm``
(process-supervised reward models that score every step of a clinical note).
"""

import os as _os

__version__ = "0.1.0"

# No usage telemetry from the Hugging Face libraries unless the user turns it on (before they are imported).
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# Offline by default: no Hugging Face Hub requests unless CLINRL_ALLOW_HUB=1 (see clinrl.llm.hub).
from clinrl.llm.hub import offline_by_default as _offline_by_default  # noqa: E402

_offline_by_default()
