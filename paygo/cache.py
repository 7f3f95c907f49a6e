"""The cache backend on Redis: Django's, with one client (and so one connection pool) per process.

Django's caches are per context (asgiref's Local): under an ASGI server (Daphne: `manage.py serve`,
and the production shape's sockets) every request and every socket handshake is a context of its
own, whose RedisCache built a client, and with it a connection pool, and so opened a new connection
to Redis (a TCP connection and a SELECT) for its first command. Django's own fix is still open
(django/django#18459). Here every cache of one configuration shares the client made first; redis-py's
pools are safe across threads and make themselves anew in a forked child."""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.utils.functional import cached_property

_clients: dict[str, object] = {}
_making = threading.Lock()


class RedisCache(DjangoRedisCache):
    @cached_property
    def _cache(self):
        # The configuration as written (an overridden CACHES, as in a test, gets a client of its own).
        config = repr((self._class, self._servers, sorted(self._options.items())))
        client = _clients.get(config)
        if client is None:
            with _making:
                client = _clients.setdefault(config, self._class(self._servers, **self._options))
        return client
