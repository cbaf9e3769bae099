"""Sub-commands of the lrbench CLI (one module each)."""
