"""The marketplace API: browse, list, change and retire services."""

from __future__ import annotations

from typing import Any

from djangorestframework_camel_case.util import underscoreize
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from marketplace import selectors, services
from marketplace.serializers import (
    SERVICE_NAME_TAKEN,
    CategorySerializer,
    MyServiceFilterSerializer,
    PublicServiceFilterSerializer,
    ServiceResponseSerializer,
    ServiceSerializer,
    ToggleStatusResponseSerializer,
)
from paygo.api.filters import query_filters
from paygo.api.pagination import Pagination
from paygo.api.parsers import JSONParser
from paygo.api.permissions import IsVendor, IsVendorOrStaffWithPermission
from paygo.api.schema import error_codes, error_responses


class _ServiceView(APIView):
    def filters(self, serializer_class) -> dict[str, Any]:
        params = underscoreize(query_filters(self.request), **JSONParser.json_underscoreize)
        for paging in ("page", "page_size"):
            params.pop(paging, None)
        data = serializer_class(data=params)
        data.is_valid(raise_exception=True)
        return data.validated_data

    def paginated(self, queryset) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(ServiceSerializer(page, many=True).data)


_LIST_PARAMETERS = [
    OpenApiParameter("vendorId", OpenApiTypes.INT),
    OpenApiParameter("category", OpenApiTypes.STR),
    OpenApiParameter("subcategory", OpenApiTypes.STR),
    OpenApiParameter("type", OpenApiTypes.STR),
    OpenApiParameter("unit", OpenApiTypes.STR),
    OpenApiParameter("token", OpenApiTypes.STR),
    OpenApiParameter("minRate", OpenApiTypes.STR),
    OpenApiParameter("maxRate", OpenApiTypes.STR),
    OpenApiParameter("search", OpenApiTypes.STR),
    OpenApiParameter("ordering", OpenApiTypes.STR, enum=["createdAt", "-createdAt", "name", "-name", "rate", "-rate"]),
    OpenApiParameter("includeInactive", OpenApiTypes.BOOL),
]


class ServiceListCreateView(_ServiceView):
    results_key = "services"

    def get_permissions(self):
        return [IsVendor()] if self.request.method == "POST" else [AllowAny()]

    @extend_schema(
        summary="Browse the marketplace",
        parameters=_LIST_PARAMETERS,
        # 403: includeInactive, but for the vendor's own services and staff
        responses={200: ServiceSerializer(many=True), **error_responses(403)},
    )
    def get(self, request):
        filters = self.filters(PublicServiceFilterSerializer)
        return self.paginated(selectors.service_list(viewer=request.user, filters=filters))

    @extend_schema(
        summary="List a new service (vendors)",
        request=ServiceSerializer,
        responses={201: ServiceResponseSerializer, **error_codes(SERVICE_NAME_TAKEN)},
    )
    def post(self, request):
        data = ServiceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        service = services.service_create(vendor=request.user, **data.validated_data)
        return Response(
            {"message": "Service created.", "service": ServiceSerializer(service).data},
            status=status.HTTP_201_CREATED,
        )


_NAME_TAKEN = error_codes(SERVICE_NAME_TAKEN)


class ServiceDetailView(_ServiceView):
    def get_permissions(self):
        if self.request.method == "GET":
            return [AllowAny()]
        if self.request.method == "DELETE":
            return [IsVendorOrStaffWithPermission(*selectors.RETIRE_SERVICE)]
        return [IsVendor()]  # PUT/PATCH: selectors.EDIT_SERVICE

    @extend_schema(
        summary="A service",
        # 403: an inactive service, to anyone but its vendor and staff
        responses={200: inline_serializer("ServiceDetail", {"service": ServiceSerializer()}), **error_responses(403)},
    )
    def get(self, request, service_id: int):
        service = selectors.service_get_visible(viewer=request.user, service_id=service_id)
        return Response({"service": ServiceSerializer(service).data})

    def _update(self, request, service_id: int, *, partial: bool) -> Response:
        service = selectors.service_get_for_owner(
            user=request.user, service_id=service_id, permissions=selectors.EDIT_SERVICE
        )
        data = ServiceSerializer(service, data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        service = services.service_update(service=service, **data.validated_data)
        return Response({"message": "Service updated.", "service": ServiceSerializer(service).data})

    @extend_schema(
        summary="Replace a service",
        request=ServiceSerializer,
        responses={200: ServiceResponseSerializer, **_NAME_TAKEN},
    )
    def put(self, request, service_id: int):
        return self._update(request, service_id, partial=False)

    @extend_schema(
        summary="Change a service", request=ServiceSerializer, responses={200: ServiceResponseSerializer, **_NAME_TAKEN}
    )
    def patch(self, request, service_id: int):
        return self._update(request, service_id, partial=True)

    @extend_schema(
        summary="Delete (retire) a service",
        responses={200: inline_serializer("ServiceDeleted", {"message": serializers.CharField()})},
    )
    def delete(self, request, service_id: int):
        service = selectors.service_get_for_owner(
            user=request.user, service_id=service_id, permissions=selectors.RETIRE_SERVICE
        )
        services.service_delete(service=service, by=request.user)
        return Response({"message": "Service deleted."})


class ServiceToggleStatusView(_ServiceView):
    def get_permissions(self):
        return [IsVendorOrStaffWithPermission(selectors.CHANGE_SERVICE)]

    @extend_schema(
        summary="Activate or deactivate a service", request=None, responses={200: ToggleStatusResponseSerializer}
    )
    def patch(self, request, service_id: int):
        service = selectors.service_get_for_owner(user=request.user, service_id=service_id)
        service = services.service_toggle_status(service=service)
        message = "Service activated." if service.is_active else "Service deactivated."
        return Response({"message": message, "is_active": service.is_active})


class MyServicesView(_ServiceView):
    permission_classes = [IsVendor]
    results_key = "services"

    @extend_schema(
        summary="The calling vendor's services, active or not",
        parameters=[p for p in _LIST_PARAMETERS if p.name not in ("vendorId", "includeInactive")]
        + [OpenApiParameter("isActive", OpenApiTypes.BOOL)],
        responses={200: ServiceSerializer(many=True)},
    )
    def get(self, request):
        filters = self.filters(MyServiceFilterSerializer)
        return self.paginated(selectors.service_list_for_vendor(vendor=request.user, filters=filters))


class CategoryListView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        summary="The categories and their subcategories (names the service API takes)",
        responses={200: inline_serializer("Categories", {"categories": CategorySerializer(many=True)})},
    )
    def get(self, request):
        return Response({"categories": CategorySerializer(selectors.category_tree(), many=True).data})
