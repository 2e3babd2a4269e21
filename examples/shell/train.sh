#!/bin/sh
# The quick example's synthetic trainer as a POSIX shell script: no Python, no jq.
# It shows that any program can be an hpod trial (protocol: docs/trial-protocol.md):
#   - parameters arrive as one JSON object in $HPOD_PARAMS (read here with sed);
#   - each report is one JSON line written to the file descriptor numbered $HPOD_REPORT_FD;
#   - when $HPOD_DECISION_TIMEOUT is not 0, the daemon answers each report with one line on
#     $HPOD_CONTROL_FD, such as {"decision":"stop","step":3}.
# Run by hand (no hpod environment) it prints its reports to stdout instead:
#   sh train.sh
#   HPOD_PARAMS='{"lr": 0.01, "units": 32, "act": "tanh"}' sh train.sh
set -eu

params=${HPOD_PARAMS:-"{}"}

# param NAME DEFAULT: the value of NAME in the flat JSON object $params (a number or a string).
param() {
    value=$(printf '%s\n' "$params" |
        sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\{0,1\}\([^\",}]*\).*/\1/p")
    printf '%s\n' "${value:-$2}"
}

lr=$(param lr 0.001)
units=$(param units 64)
dropout=$(param dropout 0.2)
act=$(param act relu)
epochs=$(param epochs 10)
# HPOD_SEED (0 by hand) makes the repeats of a configuration ([trial] repeats) draw different
# noise, while a retried run draws the same.
seed=$(printf '%s:%s' "${HPOD_SEED:-0}" "$params" | cksum | cut -d ' ' -f 1)

if [ -n "${HPOD_REPORT_FD:-}" ]; then
    # hpod passes the pipes as descriptors 3 and 4, but reaching them by path works with
    # any number (dash accepts only one-digit descriptors in redirections like >&N).
    exec 3>"/dev/fd/$HPOD_REPORT_FD"
    exec 4<"/dev/fd/$HPOD_CONTROL_FD"
    answers=${HPOD_DECISION_TIMEOUT:-30}
else
    exec 3>&1
    answers=0
fi

# One report line per epoch; the loss curve is the one examples/quick/train.py draws.
awk -v lr="$lr" -v units="$units" -v dropout="$dropout" -v act="$act" -v epochs="$epochs" \
    -v seed="$seed" 'BEGIN {
        srand(seed % 2147483647)
        penalty = (act == "gelu") ? 0 : (act == "relu") ? 0.02 : (act == "tanh") ? 0.06 : 0.1
        d_lr = log(lr / 0.003) / log(10)
        d_units = log(units / 128) / log(2) / 2
        d_dropout = (dropout - 0.1) * 4
        floor = 0.05 + 0.1 * d_lr ^ 2 + 0.05 * d_units ^ 2 + 0.03 * d_dropout ^ 2 + penalty
        rate = 0.1 + 0.15 * (log(lr) / log(10) + 5)
        for (epoch = 1; epoch <= epochs; epoch++) {
            noise = (rand() - 0.5) * 0.02 * exp(-0.2 * epoch)
            loss = floor + (2.3 - floor) * exp(-rate * epoch) + noise
            printf "{\"step\": %d, \"loss\": %.6f, \"accuracy\": %.6f}\n", epoch, loss, exp(-loss)
        }
    }' |
while IFS= read -r line; do
    printf '%s\n' "$line" >&3
    if [ "$answers" != "0" ]; then
        # One answer per report; end of file (the daemon went away) means carry on.
        IFS= read -r answer <&4 || answer=""
        case $answer in
            *'"stop"'* | *'"pause"'*) echo "told to stop: $answer"; exit 0 ;;
        esac
    fi
done
