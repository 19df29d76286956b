"""``python -m segnet_domains`` = the ``segnet-domains`` command."""

from segnet_domains.cli import run

run()
