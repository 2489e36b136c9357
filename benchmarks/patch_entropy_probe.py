"""What PSAQ-ViT's patch-similarity entropy says about real images and noise, for vit_prior_demo.sh's ViT teacher.

    python benchmarks/patch_entropy_probe.py TEACHER_PT      (with patches/vit_patch_similarity.diff applied)

Prints, for each attention block, the estimated entropy of the patch similarities (PSAQ-ViT's estimator, the one
synthesizer.patch_weight maximises) and the spread of the similarities themselves, averaged over 256 images of
each kind: the demo's real shapes (test split) and uniform noise. A prior worth maximising should score the real
images higher.
"""
from __future__ import annotations

import sys

import torch
import timm

from datafree.data import build_dataset
from datafree.ops.patch_similarity import PatchSimilarityEntropy, similarity_entropy
from datafree.teachers.loader import load_teacher


def main(checkpoint: str) -> None:
    vit = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=4, embed_dim=64, depth=4,
                                                           num_heads=4, mlp_ratio=2, num_classes=10)
    teacher = load_teacher("module", model=vit, checkpoint=checkpoint).model.eval()
    prior = PatchSimilarityEntropy(teacher)
    torch.manual_seed(0)
    kinds = {"real shapes": build_dataset("shapes", split="test", n=256, seed=3, image_size=32).images.float() / 255,
             "uniform noise": torch.rand(256, 3, 32, 32)}
    print("| images | entropy per block | summed (the prior maximises it) | similarity sd per block |")
    print("| --- | --- | ---: | --- |")
    for name, images in kinds.items():
        with prior, torch.no_grad():
            teacher(images)
            features, prior._features = prior._features, []
        entropies = [similarity_entropy(f).item() for f in features]
        spreads = []
        for f in features:
            unit = torch.nn.functional.normalize(f, dim=-1)
            spreads.append((unit @ unit.transpose(1, 2)).std().item())
        print(f"| {name} | {' / '.join(f'{e:.2f}' for e in entropies)} | {sum(entropies):.2f} | "
              f"{' / '.join(f'{s:.2f}' for s in spreads)} |")


if __name__ == "__main__":
    main(sys.argv[1])
