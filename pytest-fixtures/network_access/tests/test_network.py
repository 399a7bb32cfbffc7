import socket

import pytest


def test_no_outbound_connection():
    with pytest.raises(OSError):
        socket.create_connection(("1.1.1.1", 53), timeout=3).close()


def test_no_dns():
    with pytest.raises(OSError):  # socket.gaierror is an OSError
        socket.getaddrinfo("pypi.org", 443)


def test_loopback_still_works_by_name():
    # Tests may run servers on localhost (HTTP test servers, databases): only the outside is cut.
    server = socket.create_server(("localhost", 0))
    port = server.getsockname()[1]
    with socket.create_connection(("localhost", port), timeout=3) as client:
        conn, _ = server.accept()
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.close()
    server.close()
