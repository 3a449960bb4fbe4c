"""Output serializers of the API (read-only), and the shapes of write answers for the OpenAPI schema.

Input is validated by prm.inputs; these only render rows that the views fetched with their relations.
"""

from rest_framework import serializers

from prm.models import Activity, ActivityKind, Certification, Deal, Partner


class PartnerHealthSerializer(serializers.Serializer):
    """The partner's current health, as the latest recompute left it on the partner row."""

    score = serializers.FloatField(source="health_score", allow_null=True)
    band = serializers.ChoiceField(source="health_band", choices=Partner.Band.choices)
    trend = serializers.FloatField(source="health_trend", allow_null=True)
    as_of = serializers.DateTimeField(source="health_as_of", allow_null=True)
    model = serializers.IntegerField(source="health_model_id", allow_null=True, help_text="Scoring model id.")


class PartnerSerializer(serializers.ModelSerializer):
    tier = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True, help_text="Tier slug.")
    owner = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True, help_text="Username of the account manager."
    )
    health = PartnerHealthSerializer(source="*", read_only=True)

    class Meta:
        model = Partner
        fields = [
            "external_id",
            "name",
            "type",
            "tier",
            "region",
            "status",
            "owner",
            "quarterly_revenue_target",
            "joined_on",
            "agreement_start",
            "agreement_end",
            "health",
        ]
        read_only_fields = fields


class ActivityKindSerializer(serializers.ModelSerializer):
    class Meta:
        model = ActivityKind
        fields = ["key", "label", "category", "unit"]
        read_only_fields = fields


class ActivitySerializer(serializers.ModelSerializer):
    partner = serializers.SlugRelatedField(slug_field="external_id", read_only=True)
    kind = serializers.SlugRelatedField(slug_field="key", read_only=True)
    contact_email = serializers.EmailField(source="contact.email", read_only=True, allow_null=True)

    class Meta:
        model = Activity
        fields = [
            "partner",
            "kind",
            "occurred_at",
            "quantity",
            "value",
            "source",
            "external_id",
            "contact_email",
            "metadata",
            "created_at",
        ]
        read_only_fields = fields


class DealSerializer(serializers.ModelSerializer):
    partner = serializers.SlugRelatedField(slug_field="external_id", read_only=True)

    class Meta:
        model = Deal
        fields = ["external_id", "partner", "name", "amount", "stage", "registered_at", "closed_at", "updated_at"]
        read_only_fields = fields


class CertificationSerializer(serializers.ModelSerializer):
    partner = serializers.SlugRelatedField(slug_field="external_id", read_only=True)
    contact_email = serializers.EmailField(source="contact.email", read_only=True, allow_null=True)

    class Meta:
        model = Certification
        fields = ["partner", "contact_email", "name", "role", "earned_on", "expires_on"]
        read_only_fields = fields


# Answers of writes, for the schema -----------------------------------------------------------------


class IngestResultSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Events stored by this request.")
    duplicates = serializers.IntegerField(help_text="Events already stored (same source and external_id).")


class UpsertResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


# Errors of a write body, as raw schemas: no serializer describes a dict keyed by field names.
LIST_ERRORS_SCHEMA = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "field", "message"],
                "properties": {
                    "index": {
                        "type": "integer",
                        "description": "Position of the item in the list; -1 for the list as a whole.",
                    },
                    "field": {"type": "string", "description": "The field at fault; '-' for the item as a whole."},
                    "message": {"type": "string"},
                },
            },
        }
    },
    "description": 'A list body\'s errors, every bad item at once: {"errors": [{"index", "field", "message"}]}.',
}
FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
    "description": 'A single object\'s errors by field: {"field": ["message"]}; "non_field_errors" for the whole.',
}
# DRF's own answer where no field is at fault: a body that is not JSON, a media type it does not read.
DETAIL_SCHEMA = {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}
BODY_ERRORS_SCHEMA = {"anyOf": [LIST_ERRORS_SCHEMA, FIELD_ERRORS_SCHEMA, DETAIL_SCHEMA]}
OBJECT_ERRORS_SCHEMA = {"anyOf": [FIELD_ERRORS_SCHEMA, DETAIL_SCHEMA]}
