from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView

from portal.certificates import views as certificates
from portal.evaluation import views as evaluation
from portal.submissions import views as submissions
from portal.submissions.api import BundleUploadView
from portal.tickets import views as tickets



class NoControlCharactersConverter:
    """A path segment like `str` that contains no control character, so a %00 in a certificate number or ticket id is a 404.

    The views look the segment up in the database, and PostgreSQL text cannot hold NUL.
    """

    regex = r"[^/\x00-\x1f\x7f-\x9f]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(NoControlCharactersConverter, "segment")

urlpatterns = [
    path("", certificates.certificate_list, name="certificate-list"),
    path("certificates/verify/", certificates.certificate_verify, name="certificate-verify"),
    path("certificates/revoked/", certificates.revocation_list, name="revocation-list"),
    path("certificates/revoked.json", certificates.revocation_list_json, name="revocation-list-json"),
    path("certificates/credential/verify/", certificates.credential_verify, name="credential-verify"),
    path("certificates/credential/key.pem", certificates.credential_public_key, name="credential-key"),
    path("certificates/credential/keys.json", certificates.credential_public_keys, name="credential-keys"),
    path("certificates/<segment:number>/", certificates.certificate_detail, name="certificate-detail"),
    path("certificates/<segment:number>/pdf/", certificates.certificate_pdf, name="certificate-pdf"),
    path("certificates/<segment:number>/credential.json", certificates.certificate_credential, name="certificate-credential"),
    path("feeds/certificates.json", certificates.certificate_feed_json, name="feed-json"),
    path("feeds/certificates.csv", certificates.certificate_feed_csv, name="feed-csv"),
    path("feeds/levels.svg", certificates.certificate_plot, name="feed-plot"),
    path("feeds/levels-<str:language>.svg", certificates.certificate_plot, name="feed-plot-language"),
    path("cards/<int:card_id>/", certificates.card_detail, name="card-detail"),
    path("submissions/", submissions.submission_list, name="submission-list"),
    path("submissions/upload/", submissions.submission_upload, name="submission-upload"),
    path("submissions/<int:pk>/", submissions.submission_detail, name="submission-detail"),
    path("tickets/", tickets.ticket_list, name="ticket-list"),
    path("tickets/<segment:ticket_id>/download/", tickets.ticket_download, name="ticket-download"),
    path("staff/queue/", submissions.staff_queue, name="staff-queue"),
    path("staff/submissions/<int:submission_pk>/issue/", certificates.certificate_issue, name="certificate-issue"),
    path("staff/certificates/<segment:number>/revoke/", certificates.certificate_revoke, name="certificate-revoke"),
    path("staff/evaluation/", evaluation.evaluation_index, name="evaluation-index"),
    path("staff/evaluation/submissions/<int:submission_pk>/build/", evaluation.build_pairs, name="evaluation-build"),
    path("staff/evaluation/sets/<int:set_pk>/", evaluation.set_detail, name="evaluation-set"),
    path("staff/evaluation/sets/<int:set_pk>/review/", evaluation.review, name="evaluation-review"),
    path("staff/evaluation/sets/<int:set_pk>/pairs/<int:position>/judge/", evaluation.judge_pair, name="evaluation-judge"),
    path("staff/evaluation/sets/<int:set_pk>/pairs/<int:position>/adjudicate/", evaluation.adjudicate_pair, name="evaluation-adjudicate"),
    path("staff/evaluation/sets/<int:set_pk>/sign-off/", evaluation.sign_off_set, name="evaluation-sign-off"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/start/", submissions.start_page, name="start-page"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/bundles/", BundleUploadView.as_view(), name="api-bundle-upload"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include("portal.registry.urls")),
    path("", include("portal.audit.urls")),
    path("", include("portal.submissions.urls")),
    path("admin/", admin.site.urls),
]
