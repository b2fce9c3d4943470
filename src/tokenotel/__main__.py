"""``python -m tokenotel`` runs the CLI."""

from tokenotel.cli import main

main()
