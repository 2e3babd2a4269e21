"""A small Keras CNN on scikit-learn's digits (8x8 grey images, no download), for hpod.

The whole hpod part is `hpod.keras.Reporter`: it reports each epoch's logs, stops training on
"stop", and on "pause" (this study's ASHA runs in pause mode) saves the model and optimizer to
the trial folder and exits; when ASHA promotes the trial, the daemon starts it again with
HPOD_RESUME_FROM and `reporter.restore(model)` continues from the saved epoch.

Runs unchanged on the CPU or on a GPU: hpod sets CUDA_VISIBLE_DEVICES (and memory growth when
trials share a GPU). By hand:

    python train.py
    HPOD_PARAMS='{"filters": 32, "lr": 0.003}' python train.py

Needs TensorFlow and scikit-learn: pip install 'hpod[tensorflow]'.
"""

import os

# Before TensorFlow is imported: keep its start-up chatter out of stderr.log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hpod.trial as trial  # noqa: E402

DEFAULTS = {"lr": 1e-3, "filters": 16, "kernel": 3, "dense": 64, "dropout": 0.25,
            "batch_size": 32, "epochs": 27}


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)  # pixel values are 0..16
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)


def build_model(p: dict):
    import keras

    filters, kernel = int(p["filters"]), int(p["kernel"])
    model = keras.Sequential([
        keras.Input(shape=(8, 8, 1)),
        keras.layers.Conv2D(filters, kernel, padding="same", activation="relu"),
        keras.layers.Conv2D(2 * filters, kernel, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(int(p["dense"]), activation="relu"),
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
    reporter = hpod.keras.Reporter(objective="val_accuracy")  # before the model: memory cap
    x_train, x_val, y_train, y_val = load_data()
    model = build_model(p)
    start = reporter.restore(model)  # 0, or the epoch a paused trial stopped at
    if start:
        print(f"resumed at epoch {start} from {trial.resume_from()}", flush=True)
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val), verbose=0,
                        epochs=int(p["epochs"]), batch_size=int(p["batch_size"]),
                        initial_epoch=start, callbacks=[reporter])
    # Reached only when training ended or was stopped: a pause exits inside fit.
    if history.epoch:
        print(f"val_accuracy {history.history['val_accuracy'][-1]:.4f} after "
              f"{history.epoch[-1] + 1} epochs", flush=True)


if __name__ == "__main__":
    main()
