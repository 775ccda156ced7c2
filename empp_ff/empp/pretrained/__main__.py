"""``python -m empp_ff.empp.pretrained RUN OUT.pt``: a self-supervised run -> a bundle file."""

import sys

from empp_ff.empp.pretrained import write_bundle

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m empp_ff.empp.pretrained RUN_DIR_OR_CHECKPOINT OUT.pt")
    print(write_bundle(sys.argv[1], sys.argv[2]))
