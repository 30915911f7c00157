"""The agent's upload endpoint: POST /api/v1/bundles/."""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.registry.services import vendors_of
from portal.submissions.errors import SubmissionError
from portal.submissions.services import receive_bundle, uploader_vendor
from portal.submissions.uploads import TOO_LARGE_FLAG


class SubmissionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    url = serializers.SerializerMethodField()

    def get_url(self, submission) -> str:
        return self.context["request"].build_absolute_uri(reverse("submission-detail", args=[submission.pk]))


ERROR_SCHEMA = inline_serializer("Error", {"code": serializers.CharField(), "detail": serializers.CharField()})


class BundleUploadView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="upload_bundle",
        request={"multipart/form-data": inline_serializer("BundleUpload", {
            "bundle": serializers.FileField(help_text="the signed .tar bundle written by `python -m agent bundle`"),
            "vendor": serializers.CharField(required=False, help_text="vendor identifier; needed only for members of several vendors"),
        })},
        responses={
            201: SubmissionSerializer, 200: SubmissionSerializer,
            400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 413: ERROR_SCHEMA,
        },
        description="Store a bundle as a submission and queue its validation. The same bytes again return the stored submission with 200.",
    )
    def post(self, request):
        # Check membership before reading the body, so outsiders do not stream a large file first.
        if not vendors_of(request.user):
            raise SubmissionError("vendor_membership_missing", user=request.user.get_username())

        upload = request.FILES.get("bundle")
        if getattr(request._request, TOO_LARGE_FLAG, False):
            raise SubmissionError("bundle_too_large", limit=settings.BUNDLE_UPLOAD_MAX_BYTES)
        if upload is None:
            raise SubmissionError("bundle_missing")

        vendor = uploader_vendor(request.user, request.data.get("vendor"))
        submission, created = receive_bundle(
            vendor=vendor, upload=upload, actor=request.user, remote_addr=request.META.get("REMOTE_ADDR")
        )
        body = SubmissionSerializer(submission, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
