"""The ``mekong`` command line (click): one module per command group, gathered by :mod:`tools.cli.main`.

Commands parse their arguments, call library code (:mod:`tools.client`, :mod:`ledger`,
:mod:`credentials`, :mod:`node`) and print; they hold no logic another command borrows.
"""
