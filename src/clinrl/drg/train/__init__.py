"""Training: SFT data (distilled reasoning, MS-DRG knowledge), SFT and GRPO with the study's enhancements."""
