"""Load benchmarks of the digit service against the obvious implementation and the HTTP floor.

Each script runs either way from the repository root: ``python -m benchmarks.run`` or
``python benchmarks/run.py``. Run the second way, Python puts ``benchmarks/`` itself first on
``sys.path``, and this checkout's packages (``service``, ``harness``, ``benchmarks``) would not be
found, or the shared venv's editable install would find another checkout's. So each script starts
by putting the repository root there instead, as ``-m`` would have::

    if not __package__:
        sys.path[0] = str(Path(__file__).resolve().parent.parent)

It stays two lines in each script, not a shared module: the module would have to be found on the
very ``sys.path`` it mends, and the ``spawn`` workers of realworld.py and read_numbers.py start
with the mended one.
"""
