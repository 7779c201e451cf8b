app_name = "agents"
urlpatterns = []
