"""Stage 1: records in, token ids and labels out. Imports nothing from train/evaluate."""
