"""A synthetic trainer for hpod: ten "epochs" of a noisy learning curve in well under a second.

The final loss is a bowl over the hyperparameters (best near lr=3e-3, units=128, dropout=0.1,
act="gelu"); each epoch moves the loss from 2.3 towards it, faster for larger learning rates.
It reports `loss` and `accuracy` every epoch, stops when told to, and on "pause" writes a
checkpoint it resumes from. Run it by hand too:

    python train.py                                   # the defaults below, reports are no-ops
    HPOD_PARAMS='{"lr": 0.01, "units": 32}' python train.py
"""

import json
import math
import random

import hpod.trial as trial

DEFAULTS = {"lr": 1e-3, "units": 64, "dropout": 0.2, "act": "relu", "epochs": 10}
ACTIVATION_PENALTY = {"gelu": 0.0, "relu": 0.02, "tanh": 0.06}


def final_loss(p: dict) -> float:
    """The loss this configuration converges to: a quadratic bowl in the encoded space."""
    d_lr = math.log10(p["lr"] / 3e-3)
    d_units = math.log2(p["units"] / 128) / 2
    d_dropout = (p["dropout"] - 0.1) * 4
    return 0.05 + 0.1 * d_lr**2 + 0.05 * d_units**2 + 0.03 * d_dropout**2 \
        + ACTIVATION_PENALTY.get(p["act"], 0.1)


def loss_at(p: dict, epoch: int) -> float:
    """Loss after `epoch` epochs (1-based), with noise drawn from the trial's seed."""
    floor = final_loss(p)
    rate = 0.1 + 0.15 * (math.log10(p["lr"]) + 5)  # lr 1e-5 -> 0.1, lr 1e-1 -> 0.7 per epoch
    # Seeded per epoch, not per run: a resumed run draws the noise the first run would have.
    # trial.seed() makes the repeats of a configuration differ ([trial] repeats), while a
    # retried run repeats itself.
    key = f"{trial.seed()}:{json.dumps(p, sort_keys=True)}:{epoch}"
    noise = random.Random(key).gauss(0.0, 0.01)
    return floor + (2.3 - floor) * math.exp(-rate * epoch) + noise * math.exp(-0.2 * epoch)


def main() -> None:
    p = trial.params(defaults=DEFAULTS)
    trial.declare_resumable()  # it checkpoints on "pause" and resumes below: it may be paused
    start = 0
    resume = trial.resume_from()
    if resume is not None:
        start = json.loads(resume.read_text())["epoch"]
    for epoch in range(start + 1, int(p["epochs"]) + 1):
        loss = loss_at(p, epoch)
        decision = trial.report(epoch, loss=loss, accuracy=math.exp(-loss))
        if decision == "pause":
            checkpoint = trial.trial_dir() / "checkpoint.json"
            checkpoint.write_text(json.dumps({"epoch": epoch}))
            trial.checkpoint(checkpoint)
        if decision != "continue":
            print(f"{decision} after epoch {epoch}: loss {loss:.4f}")
            return
    print(f"done: loss {loss_at(p, int(p['epochs'])):.4f}")


if __name__ == "__main__":
    main()
