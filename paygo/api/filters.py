"""How list views read their query filters: one rule for every list.

An empty value is no filter (`?status=` is a form's "any" choice), as if the parameter were absent;
a value that is there is validated by the view's query serializer, so that `read=null` or a
malformed date is a 400 naming the parameter, never read as "no filter". The schema says so of
every optional filter (`allowEmptyValue`, paygo.api.schema). Paging is the paginator's to read.

A range given by `from` and `to` (dates or instants) may be open at either end; one that ends
before it starts is refused (`reversed_range`), the same wherever a list or a dashboard takes one:
it is a mistake, and answering an empty list would hide it.
"""

from __future__ import annotations

from typing import Any


def query_filters(request) -> dict[str, str]:
    """The request's query parameters with a value, as a plain dict (a QueryDict would make DRF
    read an absent boolean as false, as an HTML form's unticked box)."""
    return {name: value for name, value in request.query_params.items() if value != ""}


def reversed_range(since: Any, until: Any) -> str | None:
    """Why the range from `since` to `until` (either None: open) is refused, naming `from`; None
    when it is not. A range that starts where it ends is not reversed."""
    if since is not None and until is not None and since > until:
        return "'from' must not be after 'to'."
    return None
