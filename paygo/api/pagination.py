"""Page-number pagination whose list key is named by the view (`services`, `transactions`, ...).

Its parameters are strict: a page that is not a whole number from 1 (or "last"), or a page size
that is not one from 1 to max_page_size, is a 400 naming the parameter, never ignored or a 404.
A page past the last one is a 404: that page does not exist.

`page` and `pageSize` are the only paging parameters, as the schema says of every list. `limit`
(the page size's name in many APIs, though not in the seed) is refused, naming `pageSize`: it was
once taken undocumented, and ignored, as an unknown parameter is, it would page by 20 a client that
asked for 5.

A list is counted up to `count_limit` (10,000) items: a longer one answers that count, and its pages
(the last included) are those of its first count_limit items, newest first; its filters (dates, where
it has them) reach further. Counting all of a list grows with it (a year of a session always on is
half a million ledger entries), and so does a page deep in it (an OFFSET reads every item before it):
so bounded, neither does, and every list has the same shape.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

from django.core.paginator import Paginator
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

_WHOLE_NUMBER = re.compile(r"[1-9][0-9]{0,17}")  # from 1; 18 digits keep it inside a 64-bit integer
_LARGEST = 10**18 - 1


class CountedUpTo(Paginator):
    """Django's paginator counting its list up to a limit, without reading the rest of it.

    A list that is neither a queryset nor a sequence counts itself: `count_up_to(limit)`."""

    def __init__(self, object_list, per_page, *, count_limit: int):
        super().__init__(object_list, per_page)
        self.count_limit = count_limit

    @cached_property
    def count(self) -> int:
        items, limit = self.object_list, self.count_limit
        if hasattr(items, "count_up_to"):
            return items.count_up_to(limit)
        if isinstance(items, QuerySet):
            # Its first `limit` rows in the list's own order: the index that serves its pages serves
            # the count too, and the scan stops at `limit`. (Unordered, the planner was free to pick a
            # sequential scan of the table: it did, for the notifications of a user whose rows were
            # scattered through it, once the visibility map was stale.)
            return items[:limit].count()
        return min(len(items), limit)


class Pagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "pageSize"
    max_page_size = 100
    count_limit = 10_000

    def django_paginator_class(self, object_list, per_page) -> CountedUpTo:
        return CountedUpTo(object_list, per_page, count_limit=self.count_limit)

    def paginate_queryset(self, queryset, request, view=None):
        self.results_key = getattr(view, "results_key", "results")
        return super().paginate_queryset(queryset, request, view)

    def check_query(self, request) -> None:
        """Refuse bad paging parameters (400). A view that writes before it paginates (marking
        messages read) calls it first, so that the refusal changes nothing."""
        self.get_page_size(request)
        self._page_number(request)

    def get_page_size(self, request) -> int:
        params = request.query_params
        if "limit" in params:
            raise _invalid(
                "limit",
                f"Not a parameter of this API: a page's size is {self.page_size_query_param}, 1 to "
                f"{self.max_page_size}.",
            )
        name = self.page_size_query_param
        if name not in params:
            return self.page_size
        size = _whole_number(params[name])
        if size is None or size > self.max_page_size:
            raise _invalid(name, f"A page size is a whole number from 1 to {self.max_page_size}.")
        return size

    def get_page_number(self, request, paginator) -> int:
        number = self._page_number(request)
        return paginator.num_pages if number is None else number

    def _page_number(self, request) -> int | None:
        """The page asked for (1 when none is), or None for the last one."""
        name = self.page_query_param
        if name not in request.query_params:
            return 1
        raw = request.query_params[name]
        if raw in self.last_page_strings:
            return None
        number = _whole_number(raw)
        if number is None:
            raise _invalid(name, "A page number is a whole number from 1.")
        return number

    def get_paginated_response(self, data: Any, **extra: Any) -> Response:
        return Response(
            {
                **extra,
                self.results_key: data,
                "count": self.page.paginator.count,
                "page": self.page.number,
                "totalPages": self.page.paginator.num_pages,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
            }
        )

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
            for name, (schema, description) in self.parameter_schemas().items()
        ]

    @classmethod
    def parameter_schemas(cls) -> dict[str, tuple[dict, str]]:
        """The paging parameters as the schema states them: {name: (schema, description)}."""
        return {
            cls.page_query_param: (
                {
                    "oneOf": [
                        {"type": "integer", "minimum": 1, "maximum": _LARGEST},
                        {"type": "string", "enum": ["last"]},
                    ]
                },
                'The page, from 1, or "last"; past the last page is a 404.',
            ),
            cls.page_size_query_param: (
                {"type": "integer", "minimum": 1, "maximum": cls.max_page_size},
                f"Items on a page (default {cls.page_size}).",
            ),
        }

    @classmethod
    def parameters(cls) -> list[OpenApiParameter]:
        """The paging parameters, for a view whose @extend_schema states its own (its answer is no plain list)."""
        return [
            OpenApiParameter(name, schema, description=description)
            for name, (schema, description) in cls.parameter_schemas().items()
        ]

    def get_paginated_response_schema(self, schema: dict) -> dict:
        key = getattr(self, "results_key", "results")
        return {
            "type": "object",
            "required": [key, "count", "page", "totalPages", "next", "previous"],
            "properties": {
                key: schema,
                "count": {
                    "type": "integer",
                    "maximum": self.count_limit,
                    "description": f"Items in the list, counted up to {self.count_limit}: a longer list says "
                    f"{self.count_limit}, and is paged over its first {self.count_limit} items (narrow it with its "
                    "filters to reach further).",
                },
                "page": {"type": "integer"},
                "totalPages": {"type": "integer"},
                "next": {"type": "string", "nullable": True},
                "previous": {"type": "string", "nullable": True},
            },
        }


def _whole_number(raw: str) -> int | None:
    return int(raw) if _WHOLE_NUMBER.fullmatch(raw) else None


def _invalid(parameter: str, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({parameter: [message]})
