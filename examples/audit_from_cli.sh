#!/usr/bin/env bash
# Audit your own model from the command line: your weights, your network class, your training function.
# Run from the repository root: bash examples/audit_from_cli.sh [OUT_DIR]
set -euo pipefail
out="${1:-own-model-out}"
mkdir -p "$out"
python - "$out" <<'PY'
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

sys.path.insert(0, "examples/own_model")
from mynet import fit, make_net

out = Path(sys.argv[1])
digits = load_digits()
x = (digits.images / 16.0).astype(np.float32)
np.savez(out / "digits.npz", x_train=x[:1300], y_train=digits.target[:1300], x_test=x[1300:], y_test=digits.target[1300:])
torch.manual_seed(0)
model = fit(make_net(), torch.tensor(x[:1300]).unsqueeze(1), torch.tensor(digits.target[:1300]), seed=0)
torch.save(model.state_dict(), out / "weights.pt")  # plain weights: loaded with weights_only=True
PY
audit run "$out/weights.pt" --data "npz:$out/digits.npz" --arch mynet:make_net --code-path examples/own_model \
    --train mynet:fit --forget class=3 --method relabel --reference-models 4 --out "$out/audit" --format html
