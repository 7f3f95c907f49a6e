"""What a GET of the OpenAPI document costs the server: PayGo's SchemaView, which generates and
renders it once per process for each format, beside the baseline measured in the same run,
drf-spectacular's SpectacularAPIView, which generates and renders it on every request (as PayGo
served it before).

    .venv/bin/python bench/schema_view.py [--requests 20] [--rounds 3]

Each request goes through Django's whole stack (the test client, every middleware; the baseline's
path is outside /api/, so its requests skip the rate limits' one Redis round trip, about 0.3 ms),
as `Accept: */*` (YAML, the default) and as `?format=json`. The first request of each is not
timed. Prints wall-clock and CPU time per request for each, every round.
"""

from __future__ import annotations

import argparse
import time

from _setup import setup_django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    setup_django(migrate=True)
    from django.conf import settings
    from django.test import Client, override_settings
    from django.urls import path
    from drf_spectacular.views import SpectacularAPIView

    import paygo.urls

    settings.RATELIMIT_READ_PER_IP = settings.RATELIMIT_READ_PER_USER = "100000000/m"
    # drf-spectacular's own view beside PayGo's, on a path of its own, over the same API.
    paygo.urls.urlpatterns.insert(0, path("bench-schema/", SpectacularAPIView.as_view(urlconf="paygo.urls")))
    client = Client()
    with override_settings(ROOT_URLCONF="paygo.urls"):
        for n in range(1, args.rounds + 1):
            for fmt, query in (("YAML", ""), ("JSON", "?format=json")):
                for label, url in (("baseline, drf-spectacular", "/bench-schema/"), ("SchemaView", "/api/v1/schema/")):
                    assert client.get(url + query).status_code == 200
                    wall, cpu = time.perf_counter(), time.process_time()
                    for _ in range(args.requests):
                        client.get(url + query)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    per = 1e3 / args.requests
                    print(f"round {n} {fmt} {label:26s} {wall * per:8.1f} ms wall, {cpu * per:8.1f} ms CPU per request")


if __name__ == "__main__":
    main()
