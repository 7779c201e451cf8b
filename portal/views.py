from django.http import HttpResponse


def dashboard(request):
    return HttpResponse("ok")


healthz = audit_list = dashboard


def placeholder(request, section):
    return HttpResponse(section)
