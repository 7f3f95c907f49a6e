"""Dates and times as operators read them (the admin): ISO order, to the second, with the zone.
Billing is per second, so "4 a.m." hides what matters."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
