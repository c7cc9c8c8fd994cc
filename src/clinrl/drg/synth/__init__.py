"""SYNTHETIC MIMIC-IV-shaped discharge notes and DRG codes, for the demo, tests and benchmarks."""
