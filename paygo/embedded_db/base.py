"""Django's PostgreSQL backend, on the embedded server: HOST names its data folder."""

from __future__ import annotations

from django.db.backends.postgresql import base

from paygo import embedded_db


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        # Started (or joined) on the process's first connection; later ones find it in a dict.
        params["host"] = embedded_db.socket_dir(self.settings_dict["HOST"])
        return params
