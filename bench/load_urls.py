"""Herald's URLs plus ``POST /bench/floor``: a bare Django view, the floor of bench/api_load.py.

The floor parses the same JSON body and answers the same small JSON as ``/events``, through
the same gunicorn, middleware and settings, but with no DRF, no authentication and no
database: what any Django endpoint costs on this stack.
"""

import json

from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as herald


@csrf_exempt
def floor(request):
    body = json.loads(request.body)
    return JsonResponse({"fingerprint": str(len(body))})


urlpatterns = [path("bench/floor", floor), *herald]
