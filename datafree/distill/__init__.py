"""Distillation: the loop (``trainer``), its settings, the KD loss and the terms beside it, the replay pool, offline students."""
