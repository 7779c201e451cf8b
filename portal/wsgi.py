import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

# Load the URLconf (every view module and the API it builds) now, then take everything loaded
# so far out of the garbage collector's sight. A full collection of a warm worker's ~150,000
# objects took 30-40 ms, during which every thread of the worker waits; frozen, 3-6 ms. That
# pause was the tail of the gate's latency under load (tests/perf/gate.py). Under gunicorn's
# --preload the frozen pages are also never copied by the workers' collections.
get_resolver().url_patterns  # noqa: B018 (loading is the point)
gc.collect()
gc.freeze()
