"""Logic of the ``kerafine drift`` command, as one pure function.

``kerafine/cli.py`` (owned by the CLI engineer) parses the arguments and calls
:func:`run`; this module never touches ``argparse`` or ``sys.exit`` so it can be
tested in-process and reused from a notebook or a cron wrapper.

Contract with ``kerafine/cli.py`` (agreed signature)::

    from kerafine.drift._command import run

    status = run(
        reference,            # str path: a CSV file, or a directory written by ReferenceProfile.save
        current,              # str path: a CSV file
        categorical=None,     # None, "col1,col2" (the raw --categorical string) or a list of names
        json_path=None,       # --json: where to write the full report as JSON (atomic write)
        p_value=0.05,         # --p-value
        correction="bonferroni",  # --correction {bonferroni,fdr}
        min_effect=None,      # --min-effect (None: the detector's default)
        top=20,               # --top: at most this many drifted rows in the table
        out=None,             # text stream for the table (None: sys.stdout)
        err=None,             # text stream for error messages (None: sys.stderr)
    ) -> int

Exit status returned (the CLI passes it to ``sys.exit``):

* ``0``: no drift detected;
* ``1``: drift detected (the table lists the drifted columns);
* ``2``: bad input (unreadable file, column mismatch, too few rows...): the
  message is printed to ``err``; nothing raises.
"""
