"""``[core] hostname_callable`` of the Celery tier's workers: each reports the name it was started with, so a
task instance's ``hostname`` says which of the two workers on this one machine ran it."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("DLI_TEST_WORKER_NAME") or socket.getfqdn()
