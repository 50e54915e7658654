"""``python -m pipeline.dev.chserver``: run the chDB HTTP gateway."""

from pipeline.dev.chserver.server import main

main()
