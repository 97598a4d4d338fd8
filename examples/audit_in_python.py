"""Audit your own model from Python, in memory: your network class, your training loop, your data.

    python examples/audit_in_python.py
"""

import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).parent / "own_model"))
import audit  # noqa: E402
from mynet import fit, make_net  # noqa: E402  (your own code)

digits = load_digits()
x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
y = torch.tensor(digits.target)
x_train, y_train, x_test, y_test = x[:1300], y[:1300], x[1300:], y[1300:]
torch.manual_seed(0)
model = fit(make_net(), x_train, y_train, seed=0)  # trained the way you always do

report = audit.evaluate(model, train=(x_train, y_train), held_out=(x_test, y_test), forget="class=3",
                        unlearned="relabel", model_factory=make_net, train_fn=fit, reference_models=4)
target = report.targets[0]
print(f"verdict {target.verdict}: {target.verdict_reason}")
print(f"power p = {target.power_p_value:.2g}, p = {target.p_value:.2g}, residual leakage {target.residual_leakage}")
