"""The training layer: one run end to end (Lightning module, gradient sync, metrics, results store, wandb)."""
