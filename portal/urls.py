from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from portal.certificates import views as certificates
from portal.submissions import views as submissions
from portal.submissions.api import BundleUploadView
from portal.tickets import views as tickets

urlpatterns = [
    path("", certificates.certificate_list, name="certificate-list"),
    path("certificates/verify/", certificates.certificate_verify, name="certificate-verify"),
    path("certificates/<str:number>/", certificates.certificate_detail, name="certificate-detail"),
    path("certificates/<str:number>/pdf/", certificates.certificate_pdf, name="certificate-pdf"),
    path("submissions/", submissions.submission_list, name="submission-list"),
    path("submissions/upload/", submissions.submission_upload, name="submission-upload"),
    path("submissions/<int:pk>/", submissions.submission_detail, name="submission-detail"),
    path("tickets/", tickets.ticket_list, name="ticket-list"),
    path("tickets/<str:ticket_id>/download/", tickets.ticket_download, name="ticket-download"),
    path("staff/queue/", submissions.staff_queue, name="staff-queue"),
    path("staff/submissions/<int:submission_pk>/issue/", certificates.certificate_issue, name="certificate-issue"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/bundles/", BundleUploadView.as_view(), name="api-bundle-upload"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("admin/", admin.site.urls),
]
