from django.urls import path

from agents import (
    autonomy_views,
    card_views,
    plan_views,
    simulate_views,
    version_views,
    views,
)

app_name = "agents"
urlpatterns = [
    path("", views.agent_list, name="list"),
    path("new/", views.agent_create, name="create"),
    path("<slug:slug>/", views.agent_detail, name="detail"),
    path("<slug:slug>/edit/", views.agent_edit, name="edit"),
    path("<slug:slug>/move/", views.agent_move, name="move"),
    path("<slug:slug>/pause/", views.agent_pause, name="pause"),
    path("<slug:slug>/resume/", views.agent_resume, name="resume"),
    path("<slug:slug>/retire/", views.agent_retire, name="retire"),
    path("<slug:slug>/accesses/", views.access_add, name="access-add"),
    path("<slug:slug>/accesses/<int:pk>/remove/", views.access_remove, name="access-remove"),
    path("<slug:slug>/guardrails/", views.guardrail_add, name="guardrail-add"),
    path("<slug:slug>/guardrails/<int:pk>/remove/", views.guardrail_remove,
         name="guardrail-remove"),
    path("<slug:slug>/rollback-steps/", views.step_add, name="step-add"),
    path("<slug:slug>/rollback-steps/<int:pk>/remove/", views.step_remove, name="step-remove"),
    path("<slug:slug>/tokens/", views.token_create, name="token-create"),
    path("<slug:slug>/tokens/<int:pk>/revoke/", views.token_revoke, name="token-revoke"),
    path("<slug:slug>/policy/<int:number>/", version_views.policy_version,
         name="policy-version"),
    path("<slug:slug>/simulate/", simulate_views.simulate_page, name="simulate"),
    path("<slug:slug>/simulate/preview/", simulate_views.preview, name="simulate-preview"),
    path("<slug:slug>/simulate/try/", simulate_views.try_draft, name="simulate-try-draft"),
    path("<slug:slug>/autonomy/", autonomy_views.autonomy_request, name="autonomy-request"),
    path("<slug:slug>/autonomy/<int:pk>/approve/", autonomy_views.autonomy_approve,
         name="autonomy-approve"),
    path("<slug:slug>/autonomy/<int:pk>/reject/", autonomy_views.autonomy_reject,
         name="autonomy-reject"),
    path("<slug:slug>/card/", card_views.agent_card, name="card"),
    path("<slug:slug>/plan/", plan_views.plan, name="plan"),
    path("<slug:slug>/plan/<int:pk>/tick/", plan_views.task_tick, name="plan-tick"),
]
