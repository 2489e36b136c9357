"""What synthesizers, distillation and export all use, below each of them: divergences between logits,
hooks on a network's layers (BatchNorm statistics, features), and the uint8 form of images."""
