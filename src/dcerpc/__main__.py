"""``python -m dcerpc`` is the ``dcerpc`` command."""

from .cli import main

main()
