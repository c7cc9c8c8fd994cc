"""Data preparation: MIMIC-IV files → hospital courses with v34 DRG labels → stratified splits."""
