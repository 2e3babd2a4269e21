"""A Keras MLP on scikit-learn's bundled digits dataset (8x8 images, no download), for hpod.

Real training on the CPU (or a GPU, unchanged): about a second per epoch. hpod.keras.Reporter
reports every epoch's logs (`val_accuracy`, `val_loss`, `accuracy`, `loss`, and `epoch`), ends
training when the daemon answers "stop", and checkpoints and exits on "pause" (resuming from
the checkpoint when the daemon starts the trial again). Run it by hand too (reports are then
no-ops):

    python train.py
    HPOD_PARAMS='{"lr": 0.003, "units": 128, "act": "gelu"}' python train.py

Needs TensorFlow and scikit-learn in the interpreter that runs it: pip install 'hpod[tensorflow]'.
"""

import os

# Before TensorFlow is imported: keep its start-up chatter out of stderr.log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hpod.trial as trial  # noqa: E402

DEFAULTS = {"lr": 1e-3, "units": 64, "dropout": 0.2, "act": "relu", "batch_size": 32,
            "epochs": 15}


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")  # pixel values are 0..16
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)


def build_model(p: dict):
    import keras

    model = keras.Sequential([
        keras.Input(shape=(64,)),
        keras.layers.Dense(int(p["units"]), activation=p["act"]),
        keras.layers.Dropout(float(p["dropout"])),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=float(p["lr"])),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    p = trial.params(defaults=DEFAULTS)
    import keras

    import hpod.keras

    # HPOD_SEED differs between the runs of a repeated configuration ([trial] repeats) and
    # stays the same for a retry; by hand it is 0.
    keras.utils.set_random_seed(trial.seed())
    # Before the model: it applies the study's GPU memory cap, if any.
    reporter = hpod.keras.Reporter(objective="val_accuracy")
    x_train, x_val, y_train, y_val = load_data()
    model = build_model(p)
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val),
                        epochs=int(p["epochs"]), batch_size=int(p["batch_size"]), verbose=0,
                        initial_epoch=reporter.restore(model), callbacks=[reporter])
    if reporter.stopped:
        print(f"hpod said stop after epoch {history.epoch[-1] + 1}", flush=True)
    print(f"val_accuracy {history.history['val_accuracy'][-1]:.4f} after "
          f"{history.epoch[-1] + 1} epochs", flush=True)


if __name__ == "__main__":
    main()
