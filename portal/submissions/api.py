"""The agent's upload endpoints: one request (POST /api/v1/bundles/) or resumable (/api/v1/uploads/)."""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.registry.services import vendors_of
from portal.submissions.errors import SubmissionError
from portal.submissions.notices import NO_NOTICE
from portal.submissions.services import notice_for_upload_again, receive_bundle, uploader_vendor
from portal.submissions.resumable import complete_session, open_session, session_for, write_range
from portal.submissions.uploads import TOO_LARGE_FLAG, declared_length


class SubmissionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    url = serializers.SerializerMethodField()
    error_code = serializers.SerializerMethodField()
    error_detail = serializers.SerializerMethodField()
    notice_code = serializers.SerializerMethodField(help_text="bundle_already_uploaded or bundle_revalidating when the upload made no new submission, else empty")
    notice = serializers.SerializerMethodField(help_text="the notice's sentence in the requested language, else empty")

    def get_notice_code(self, submission) -> str:
        return self.context.get("notice", NO_NOTICE)["code"]

    def get_notice(self, submission) -> str:
        return self.context.get("notice", NO_NOTICE)["detail"]

    def get_error_code(self, submission) -> str:
        report = getattr(submission, "report", None)
        return report.error_code if report is not None else ""

    def get_error_detail(self, submission) -> str:
        report = getattr(submission, "report", None)
        return report.error_detail if report is not None else ""

    def get_url(self, submission) -> str:
        return self.context["request"].build_absolute_uri(reverse("submission-detail", args=[submission.pk]))


def submission_response(request, submission, created: bool, notice: dict) -> Response:
    """Reply 201 with a new submission, or 200 with the stored one and the notice of what the upload did."""
    # With tasks run in-process the validation has already finished here, so reply with its outcome.
    submission.refresh_from_db()
    body = SubmissionSerializer(submission, context={"request": request, "notice": notice}).data
    return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


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
        description=("Store a bundle as a submission and queue its validation. The same bytes again return the stored submission with 200 "
                     "and a notice; a submission rejected for a cause that may have been fixed since is validated again."),
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
        remote_addr = request.META.get("REMOTE_ADDR")
        submission, created = receive_bundle(vendor=vendor, upload=upload, actor=request.user, remote_addr=remote_addr)
        notice = NO_NOTICE if created else notice_for_upload_again(submission.pk, actor=request.user, remote_addr=remote_addr)
        return submission_response(request, submission, created, notice)


class UploadSessionSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    received = serializers.IntegerField()
    state = serializers.CharField()
    upload_url = serializers.SerializerMethodField()
    complete_url = serializers.SerializerMethodField()
    submission = serializers.SerializerMethodField()

    def get_upload_url(self, session) -> str:
        return self.context["request"].build_absolute_uri(reverse("api-upload-session", args=[session.pk]))

    def get_complete_url(self, session) -> str:
        return self.context["request"].build_absolute_uri(reverse("api-upload-complete", args=[session.pk]))

    @extend_schema_field(SubmissionSerializer(allow_null=True))
    def get_submission(self, session):
        if session.submission is None:
            return None
        return SubmissionSerializer(session.submission, context=self.context).data


def session_body(session, request, notice: dict = NO_NOTICE) -> dict:
    return UploadSessionSerializer(session, context={"request": request, "notice": notice}).data


# The upload page uses the resumable endpoints with the browser's session, which DRF checks for a CSRF token.
SESSION_OR_TOKEN = [TokenAuthentication, SessionAuthentication]


class UploadSessionCreateView(APIView):
    authentication_classes = SESSION_OR_TOKEN
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="create_upload",
        request=inline_serializer("UploadDeclaration", {
            "size": serializers.IntegerField(help_text="bundle size in bytes"),
            "sha256": serializers.CharField(help_text="sha256 of the whole bundle, 64 hexadecimal characters"),
            "name": serializers.CharField(required=False, help_text="file name, shown on the submission page"),
            "vendor": serializers.CharField(required=False, help_text="vendor identifier; needed only for members of several vendors"),
        }),
        responses={201: UploadSessionSerializer, 200: UploadSessionSerializer, 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 409: ERROR_SCHEMA, 413: ERROR_SCHEMA},
        description=(
            "Start a resumable upload, or find the open one of the same bundle (200, with `received` bytes to resume from). "
            "When the bundle is already a submission the reply is a completed upload naming it."
        ),
    )
    def post(self, request):
        vendor = uploader_vendor(request.user, request.data.get("vendor"))
        size, sha256 = request.data.get("size"), str(request.data.get("sha256", ""))
        session, created = open_session(vendor=vendor, actor=request.user, size=size, sha256=sha256, name=str(request.data.get("name", "")))
        notice = NO_NOTICE
        if session.submission is not None:
            notice = notice_for_upload_again(session.submission.pk, actor=request.user, remote_addr=request.META.get("REMOTE_ADDR"))
            session.submission.refresh_from_db()
        return Response(session_body(session, request, notice), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class UploadSessionView(APIView):
    authentication_classes = SESSION_OR_TOKEN
    parser_classes = []

    @extend_schema(operation_id="get_upload", responses={200: UploadSessionSerializer, 404: ERROR_SCHEMA, 410: ERROR_SCHEMA},
                   description="How many bytes the portal holds: the next range starts there. 410 `upload_session_expired`: start a new upload.")
    def get(self, request, pk):
        return Response(session_body(session_for(request.user, pk), request))

    @extend_schema(
        operation_id="put_upload_range",
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[OpenApiParameter("Content-Range", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
                                     description="bytes START-END/TOTAL; START must equal `received`")],
        responses={200: UploadSessionSerializer, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA, 410: ERROR_SCHEMA, 413: ERROR_SCHEMA},
        description=(
            "Append one byte range. After a broken connection, GET the upload and continue from `received`. "
            "When the last range arrives and the bundle is already a submission, the upload is returned completed and names it. "
            "410 `upload_session_expired`: the upload received nothing for too long and its bytes were deleted; start a new upload."
        ),
    )
    def put(self, request, pk):
        session = session_for(request.user, pk)
        session = write_range(
            session.pk, range_header=request.META.get("HTTP_CONTENT_RANGE"), length=declared_length(request), stream=request._request,
        )
        return Response(session_body(session, request))


class UploadSessionCompleteView(APIView):
    authentication_classes = SESSION_OR_TOKEN
    @extend_schema(operation_id="complete_upload", request=None,
                   responses={201: SubmissionSerializer, 200: SubmissionSerializer, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA, 410: ERROR_SCHEMA},
                   description="Check size and sha256 and store the bundle as a submission; the same bundle again returns the stored one with 200.")
    def post(self, request, pk):
        session = session_for(request.user, pk)
        remote_addr = request.META.get("REMOTE_ADDR")
        submission, created = complete_session(session.pk, actor=request.user, remote_addr=remote_addr)
        notice = NO_NOTICE if created else notice_for_upload_again(submission.pk, actor=request.user, remote_addr=remote_addr)
        return submission_response(request, submission, created, notice)
