"""Runs the real Checkbox (checkbox-ng 1.18.1) with its data in a given place.

  checkbox_run.py BASE [CHECKBOX-CLI-ARGS...]

checkbox-ng keeps its sessions under WellKnownDirsHelper.base_of_everything
(plainbox.impl.session.storage), a class attribute hard-coded to
/var/tmp/checkbox-ng; there is no option or variable for it.  This sets it to
BASE, so the session repository is BASE/sessions (a plain directory or a
sessionfs mount: whatever the caller made BASE or BASE/sessions), then calls
checkbox-cli's own entry point with CHECKBOX-CLI-ARGS, e.g.

  checkbox_run.py /tmp/cb launcher tests/data/checkbox-provider/launcher

Unless $PROVIDERPATH is set, it is set to the project's test provider
(tests/data/checkbox-provider), so Checkbox loads that provider and no
installed one.  Exits with checkbox-cli's exit code (1.18.1 exits 0 even when
a job of the plan failed).  Run it with the checkbox venv's interpreter.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROVIDER = os.path.join(os.path.dirname(HERE), "data", "checkbox-provider")


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    base = os.path.abspath(argv[1])
    os.environ.setdefault("PROVIDERPATH", PROVIDER)

    # Imported only now: plainbox reads PROVIDERPATH when it first lists
    # providers, and nothing must touch /var/tmp/checkbox-ng first.
    from plainbox.impl.session.storage import WellKnownDirsHelper
    from checkbox_ng.launcher import checkbox_cli

    WellKnownDirsHelper.base_of_everything = base
    sys.argv = ["checkbox-cli"] + argv[2:]
    code = checkbox_cli.main()
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
