"""Guessing admin passwords: after LOGIN_FAILURE_LIMIT failures the account and the address are locked."""

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

LOGIN = "/admin/login/?next=/admin/"
ATTACKER, OFFICE = "203.0.113.66", "198.51.100.10"


@pytest.fixture
def staff(db, settings):
    settings.AXES_FAILURE_LIMIT = 5
    # A fast hasher: the lockout is what is tested, not PBKDF2's 0.75 s per attempt.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    User.objects.create_user("ayse", password="right-password-1", is_staff=True, is_superuser=True)
    User.objects.create_user("bora", password="right-password-2", is_staff=True, is_superuser=True)


def sign_in(username, password, ip=ATTACKER):
    return Client(REMOTE_ADDR=ip).post(LOGIN, {"username": username, "password": password})


def guess(username, times, ip=ATTACKER):
    return [sign_in(username, f"guess-{i}", ip).status_code for i in range(times)]


def test_the_right_password_is_refused_with_the_lockout_page_after_too_many_wrong_ones(staff):
    statuses = guess("ayse", 5)
    refused = sign_in("ayse", "right-password-1")

    assert statuses == [200] * 4 + [429]  # the fifth failure locks
    assert refused.status_code == 429
    page = refused.content.decode()
    assert "Too many failed sign-in attempts" in page and "ayse" in page
    assert "15 minutes" in page and "axes_reset_username" in page
    assert 'id="site-name"' in page  # the admin's own frame, not a bare text page
    assert "_auth_user_id" not in refused.client.session


def test_a_locked_username_is_refused_from_every_address(staff):
    guess("ayse", 5, ip=ATTACKER)

    assert sign_in("ayse", "right-password-1", ip=OFFICE).status_code == 429


def test_an_address_guessing_many_usernames_is_locked_for_all_of_them(staff):
    for name in ["root", "admin", "test", "ayse-x", "bora-x"]:
        guess(name, 1, ip=ATTACKER)

    assert sign_in("bora", "right-password-2", ip=ATTACKER).status_code == 429


def test_another_account_from_another_address_still_signs_in(staff):
    guess("ayse", 8, ip=ATTACKER)

    signed_in = sign_in("bora", "right-password-2", ip=OFFICE)

    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == "/admin/"


def test_a_few_mistakes_below_the_limit_do_not_lock(staff):
    guess("ayse", 4, ip=OFFICE)

    assert sign_in("ayse", "right-password-1", ip=OFFICE).status_code == 302


def test_the_lock_lifts_after_the_cool_off(staff):
    guess("ayse", 5)

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert sign_in("ayse", "right-password-1", ip=OFFICE).status_code == 302


@pytest.mark.parametrize("command", [["axes_reset_username", "ayse"], ["axes_reset"]])
def test_the_operator_unlocks_an_account_from_the_shell(staff, command):
    guess("ayse", 5, ip=ATTACKER)

    call_command(*command, stdout=open("/dev/null", "w"))

    assert sign_in("ayse", "right-password-1", ip=OFFICE).status_code == 302


def test_the_operator_unlocks_an_address_from_the_shell(staff):
    guess("nobody", 5, ip=ATTACKER)

    call_command("axes_reset_ip", ATTACKER, stdout=open("/dev/null", "w"))

    assert sign_in("bora", "right-password-2", ip=ATTACKER).status_code == 302


def test_a_superuser_sees_and_deletes_the_failed_attempts_in_the_admin(staff):
    from axes.models import AccessAttempt

    guess("ayse", 5, ip=ATTACKER)
    operator = Client(REMOTE_ADDR=OFFICE)
    operator.force_login(User.objects.get(username="bora"))

    listed = operator.get("/admin/axes/accessattempt/")
    attempt = AccessAttempt.objects.get(username="ayse")
    deleted = operator.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})

    assert listed.status_code == 200 and "ayse" in listed.content.decode()
    assert deleted.status_code == 302
    assert sign_in("ayse", "right-password-1", ip=OFFICE).status_code == 302


def test_behind_proxies_the_lock_follows_the_forwarded_client_address(staff, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy = "10.0.0.2"

    def via_proxy(username, password, client_ip):
        return Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=client_ip).post(
            LOGIN, {"username": username, "password": password}
        )

    for i in range(5):
        via_proxy(f"user{i}", "guess", ATTACKER)

    assert via_proxy("bora", "right-password-2", ATTACKER).status_code == 429
    assert via_proxy("bora", "right-password-2", OFFICE).status_code == 302


def test_failed_api_keys_never_lock_anyone_out_of_the_admin(staff, tenant):
    api = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(20):
        answer = api.post(
            "/events",
            {"tenant_id": tenant.tenant_id, "api_key": "hrld_app_wrong"},
            content_type="application/json",
        )
        assert answer.status_code in (400, 401)

    assert sign_in("ayse", "right-password-1", ip=ATTACKER).status_code == 302
