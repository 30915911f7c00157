"""Routes of the submissions app added after the first pages; the first ones are in portal/urls.py."""

from django.urls import path

from portal.submissions import api, plots_views, reference_views, views

urlpatterns = [
    path("staff/references/", reference_views.reference_list, name="reference-list"),
    path("staff/submissions/<int:pk>/revalidate/", views.submission_revalidate, name="submission-revalidate"),
    path("submissions/<int:pk>/plots/<int:index>.svg", plots_views.submission_plot, name="submission-plot"),
    path("api/v1/uploads/", api.UploadSessionCreateView.as_view(), name="api-upload-create"),
    path("api/v1/uploads/<uuid:pk>/", api.UploadSessionView.as_view(), name="api-upload-session"),
    path("api/v1/uploads/<uuid:pk>/complete/", api.UploadSessionCompleteView.as_view(), name="api-upload-complete"),
]
