# Source on the GPU machine from the repo root: installs the wheels it lacks
# (carried in .whl/, made by ../shared/device/fetch-wheels.sh .whl) and puts datafree on
# the path without installing it (from a checkout, the CLI reads the top-level recipes/).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, torchvision, kornia, hydra; print("torch", torch.__version__, "torchvision", torchvision.__version__, "kornia", kornia.__version__, "hydra", hydra.__version__)'
