"""Brute-force protection for the admin's sign-in, through django-axes (see settings).

Failed sign-ins are counted per username and per client address; past
AXES_FAILURE_LIMIT either one is locked for AXES_COOLOFF_TIME. The API never signs
anyone in (its keys are checked by ``tenants.auth``), so it is never locked out.
"""

from django.conf import settings
from django.contrib import admin
from django.shortcuts import render


def lockout_response(request, original_response=None, credentials=None):
    """The admin's login page, saying that sign-in is locked and how an operator unlocks it."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {
        **admin.site.each_context(request),
        "title": "Sign-in locked",
        "username": username,
        "cooloff_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }
    return render(request, "admin/lockout.html", context, status=429)
