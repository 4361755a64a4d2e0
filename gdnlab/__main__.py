"""``python -m gdnlab COMMAND ...``: :func:`gdnlab.cli.main`; Ctrl-C while it loads is one line, exit 130."""
import sys

try:
    from gdnlab.cli import main
except KeyboardInterrupt:
    print("gdnlab: interrupted: stopped by Ctrl-C", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
