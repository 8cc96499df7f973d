"""A small, slow, obviously-right reading of a rule document, in pure Python: the yardstick the
database evaluation (audiences.selectors) is checked against."""

from datetime import timedelta

from audiences.rules import parse_date

OPS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def kind(params: dict, key: str):
    if key not in params:
        return None
    value = params[key]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return {type(None): "null", dict: "object", list: "array"}[type(value)]


def param_matches(params: dict, f: dict) -> bool:
    key, op, value = f["param"], f["op"], f.get("value")
    k = kind(params, key)
    if op == "exists":
        return k is not None
    if op == "not_exists":
        return k is None
    actual = params.get(key)
    if op == "contains":
        return k == "string" and value in actual
    if op == "in":
        return any(
            (k == "number" and not isinstance(v, str) and float(actual) == float(v))
            or (k == "string" and isinstance(v, str) and actual == v)
            for v in value
        )
    if isinstance(value, bool):
        return k is not None and OPS[op](k, "true" if value else "false")
    if isinstance(value, str):
        return k == "string" and OPS[op](actual, value)
    return k == "number" and OPS[op](float(actual), float(value))


def rule_matches(rule: dict, user: dict, devices: list[dict], events: list[dict], now) -> bool:
    if rule["type"] == "property":
        prop, op, value = rule["property"], rule["op"], rule["value"]
        if prop == "platform":
            has = any(d["platform"] in value for d in devices if d["is_active"])
            return has if op == "in" else not has
        if prop in ("language", "country", "timezone", "app_user_id"):
            return (user[prop] in value) == (op == "in")
        if prop == "anonymous":
            return user["is_anonymous"] == value
        seen = user[f"{prop}_at"]
        if op == "within_days":
            return seen >= now - timedelta(days=value)
        if op == "not_within_days":
            return seen < now - timedelta(days=value)
        moment = parse_date(value)
        return seen < moment if op == "before" else seen > moment
    window = now - timedelta(days=rule["within_days"]) if rule.get("within_days") else None
    hits = [
        e
        for e in events
        if e["name"] == rule["event"]
        and (window is None or e["occurred_at"] >= window)
        and all(param_matches(e["params"], f) for f in rule["params"])
    ]
    if rule["type"] == "event":
        return bool(hits) == (rule["op"] == "did")
    n = len(hits)
    if rule["op"] == "between":
        return rule["value"][0] <= n <= rule["value"][1]
    return OPS[rule["op"]](n, rule["value"])


def matching_users(document: dict, users: list[dict], devices: list[dict], events: list[dict], now) -> set:
    """app_user_ids of the users the document matches."""
    found = set()
    for user in users:
        mine = [d for d in devices if d["user"] == user["app_user_id"]]
        theirs = [e for e in events if e["user"] == user["app_user_id"]]

        def group(rules, user=user, mine=mine, theirs=theirs):
            return all(rule_matches(r, user, mine, theirs, now) for r in rules)

        included = not document["include"] or any(group(g) for g in document["include"])
        if included and not any(group(g) for g in document["exclude"]):
            found.add(user["app_user_id"])
    return found


def matching_devices(document, users, devices, events, now) -> set:
    """Tokens of the targetable devices of the matching users."""
    users_in = matching_users(document, users, devices, events, now)
    return {d["token"] for d in devices if d["user"] in users_in and d["is_active"] and d["push_permission"]}
