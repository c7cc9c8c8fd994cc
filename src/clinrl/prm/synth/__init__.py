"""Error synthesis: step-labelled training notes made by injecting errors into gold notes (rules or an LLM)."""
