"""OpenAPI helpers shared by the apps' views."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes

# For views that answer a JSON object built in the view (message + payload) rather than one
# serializer: documented as an object, so the schema is complete and `check` stays quiet.
JSON_OBJECT_RESPONSES = {code: OpenApiTypes.OBJECT for code in (200, 201, 202)}
