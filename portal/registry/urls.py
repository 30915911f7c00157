from django.urls import path

from portal.registry import views

urlpatterns = [
    path("vendor/cards/", views.card_list, name="card-list"),
    path("vendor/keys/", views.key_list, name="key-list"),
    path("staff/cards/", views.staff_cards, name="staff-cards"),
    path("staff/cards/<int:pk>/approve/", views.staff_card_approve, name="staff-card-approve"),
]
