"""How list views read their query filters: one rule for every list.

An empty value is no filter (`?status=` is a form's "any" choice), as if the parameter were absent;
a value that is there is validated by the view's query serializer, so that `read=null` or a
malformed date is a 400 naming the parameter, never read as "no filter". The schema says so of
every optional filter (`allowEmptyValue`, paygo.api.schema). Paging is the paginator's to read.
"""

from __future__ import annotations


def query_filters(request) -> dict[str, str]:
    """The request's query parameters with a value, as a plain dict (a QueryDict would make DRF
    read an absent boolean as false, as an HTML form's unticked box)."""
    return {name: value for name, value in request.query_params.items() if value != ""}
