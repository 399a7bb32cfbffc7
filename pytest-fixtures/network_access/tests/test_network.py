import socket

import pytest


def test_no_outbound_connection():
    with pytest.raises(OSError):
        socket.create_connection(("1.1.1.1", 53), timeout=3).close()


def test_no_dns():
    with pytest.raises(OSError):  # socket.gaierror is an OSError
        socket.getaddrinfo("pypi.org", 443)
