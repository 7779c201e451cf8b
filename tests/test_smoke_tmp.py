import pytest
from tests.factories import make_roles
@pytest.mark.django_db
def test_smoke(client):
    r = make_roles()
    client.force_login(r.admin)
    for url in ["/", "/agents/", "/agents/refund-replies/", "/agents/refund-replies/edit/", "/agents/new/", "/audit/", "/reviews/", "/metrics/", "/metrics/alerts/", "/agents/?status=proposed&q=ref"]:
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.status_code, resp.content[:2000])
    resp = client.get("/accounts/login/")
