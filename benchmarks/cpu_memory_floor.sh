#!/usr/bin/env bash
# The CPU's memory check (distill/preflight.py, check_host_memory) against what a run really takes, on a machine
# without a GPU: the README's 224-px torchvision pair (ResNet-50 -> MobileNetV3-Large, random weights, 10 classes)
# with the fast recipe's batches, which the check refuses, then with the batches its message suggests, one round of
# one generator step and one student step, its peak resident memory measured by GNU time; then train-teacher's check
# on a ResNet-50 at 1024 px (8 random images a class, two classes), refused at batch 16 and run at batch 8 for one
# epoch (one step), its peak measured likewise (about 6 minutes in all on 2 cores).
#   benchmarks/cpu_memory_floor.sh [OUT]       (datafree installed in the active environment; writes OUT/results.txt)
set -u
out=${1:-/tmp/cpu_memory_floor}
mkdir -p "$out"
python -c "import torch, torchvision; torch.save(torchvision.models.resnet50(num_classes=10).state_dict(), '$out/resnet50_10.pth')"
pair=(experiment=fast teacher=torchvision teacher.name=resnet50 "teacher.checkpoint=$out/resnet50_10.pth"
      student=torchvision student.name=mobilenet_v3_large data.image_size=224 progress=false)
grep -E "MemTotal|MemAvailable" /proc/meminfo > "$out/results.txt"
datafree distill "${pair[@]}" "hydra.run.dir=$out/refused" > "$out/refused.txt" 2>&1
echo "fast recipe's batches: exit $? | $(grep 'error' "$out/refused.txt")" >> "$out/results.txt"
# the batches the message suggested on a 24 GiB machine with 22 GiB free (synthesizer 64, student 256)
/usr/bin/time -v datafree distill "${pair[@]}" synthesizer.batch_size=64 trainer.batch_size=256 synthesizer.g_steps=1 \
    trainer.student_steps=1 trainer.rounds=1 trainer.time_budget_s=null "hydra.run.dir=$out/fits" > "$out/fits.txt" 2>&1
echo "synthesizer.batch_size=64 trainer.batch_size=256: exit $? | $(grep -E 'Maximum resident set size' "$out/fits.txt")" \
    >> "$out/results.txt"
python - "$out/images" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
for split in ("train", "test"):
    for c in ("a", "b"):
        folder = Path(sys.argv[1]) / split / c
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(8):
            Image.fromarray(np.random.default_rng(i).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(folder / f"{i}.png")
PY
teacher=(teacher=torchvision teacher.name=resnet50 data=imagefolder "data.root=$out/images" data.image_size=1024
         teacher.train.epochs=1 progress=false)
datafree train-teacher "${teacher[@]}" data.batch_size=16 "hydra.run.dir=$out/teacher_refused" > "$out/teacher_refused.txt" 2>&1
echo "train-teacher 1024 px, data.batch_size=16: exit $? | $(grep 'error' "$out/teacher_refused.txt")" >> "$out/results.txt"
/usr/bin/time -v datafree train-teacher "${teacher[@]}" data.batch_size=8 "hydra.run.dir=$out/teacher_fits" \
    > "$out/teacher_fits.txt" 2>&1
echo "train-teacher 1024 px, data.batch_size=8: exit $? | $(grep -E 'Maximum resident set size' "$out/teacher_fits.txt")" \
    >> "$out/results.txt"
cat "$out/results.txt"
