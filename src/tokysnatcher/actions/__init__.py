"""The actions behind the command line; each returns an :class:`~tokysnatcher.errors.ExitCode`.

``download`` (a book, ``--demo``), ``interactive`` (``--search`` and the menu) and ``library``
(``--verify-folder``, ``--list-downloads``). Nothing is imported here: ``cli`` imports only the
module of the action it runs, so a run does not pay for the others' dependencies.
"""
