"""``python -m neurodeploy``: the command line (what torchrun launches per process)."""
from neurodeploy.cli import main

if __name__ == "__main__":
    main()
