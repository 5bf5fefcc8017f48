"""Training, inference and evaluation: the loops, checkpoints, the confusion-matrix evaluator, records."""
