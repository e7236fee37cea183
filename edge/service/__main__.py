"""`python -m edge.service`: the systemd unit's entry point (systemd/emotion-edge.service)."""
import sys

from edge.service.service import main

if __name__ == "__main__":  # importing edge.service.__main__ (tests walk every module) runs nothing
    sys.exit(main())
