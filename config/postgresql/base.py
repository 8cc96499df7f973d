"""Django's PostgreSQL backend, with a connection health check that rarely needs a round trip.

With CONN_HEALTH_CHECKS, Django checks a reused connection before the first query of every
request by sending ``SELECT 1``: on POST /events that was a second round trip beside the one
that does the work. A server that restarted, or terminated the backend, has by then written
something on the connection's socket (its error, or the end of the stream), so here the
round trip is made only when the socket has something to read or the driver already knows
the connection is broken; otherwise the connection is taken as usable, as the ``SELECT 1``
would have found it. Neither check notices a server that vanished without a word (a cut
network) before the socket's own timeout.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self):
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            poller = select.poll()
            poller.register(connection.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
            quiet = not poller.poll(0)
        except Exception:  # no socket to look at: ask the server
            quiet = False
        return quiet or super().is_usable()
