"""Page-number pagination whose list key is named by the view (`services`, `transactions`, ...)."""

from __future__ import annotations

from typing import Any

from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response


class Pagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "pageSize"
    max_page_size = 100

    def paginate_queryset(self, queryset, request, view=None):
        self.results_key = getattr(view, "results_key", "results")
        # `limit` is the seed's name for the page size; `pageSize` is ours.
        if "limit" in request.query_params and self.page_size_query_param not in request.query_params:
            self.page_size_query_param = "limit"
        return super().paginate_queryset(queryset, request, view)

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

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "properties": {
                self.results_key if hasattr(self, "results_key") else "results": schema,
                "count": {"type": "integer"},
                "page": {"type": "integer"},
                "totalPages": {"type": "integer"},
                "next": {"type": "string", "nullable": True},
                "previous": {"type": "string", "nullable": True},
            },
        }
