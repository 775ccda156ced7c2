"""The run directory: one training at a time (lock), a write order that survives a
kill at any instant (protocol), and derived files that know what they were made
from (fingerprints, derived). The rule for continuing a run is ``train/resume.py``."""

from empp_ff.train.rundir.lock import RunDirBusy, RunLock
from empp_ff.train.rundir.protocol import RunDirectory, remove_leftover_temporaries

__all__ = ["RunDirBusy", "RunLock", "RunDirectory", "remove_leftover_temporaries"]
