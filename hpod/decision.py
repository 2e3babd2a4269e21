"""The three answers a trial can get to a report (Ray Tune's and Syne Tune's vocabulary)."""

from enum import StrEnum


class Decision(StrEnum):
    CONTINUE = "continue"
    STOP = "stop"  # final: the trial ends now, at this report's step
    PAUSE = "pause"  # checkpoint and exit; the trial may be resumed from its checkpoint later
