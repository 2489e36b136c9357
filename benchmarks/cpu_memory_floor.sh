#!/usr/bin/env bash
# The CPU's memory check (distill/preflight.py, check_host_memory) against what a run really takes, on a machine
# without a GPU: the README's 224-px torchvision pair (ResNet-50 -> MobileNetV3-Large, random weights, 10 classes)
# with the fast recipe's batches, which the check refuses, then with the batches its message suggests, one round of
# one generator step and one student step, its peak resident memory measured by GNU time (a few minutes on 2 cores).
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
cat "$out/results.txt"
