"""Who may do what in the console. Enforced on the server for every page and action (bot/console/cases.py),
not by hiding buttons: the buttons are hidden from those who may not press them, and the server refuses them
all the same.

admin       everything
dispatcher  受理/分流: accepts or refuses, routes, summons, merges, replies, closes; sees every case
unit        承办单位: sees and acts only on the cases of their unit (as lead or co-handling unit)
supervisor  督办: sees every case, reopens (发回重办), extends, escalates by re-tiering; reports
gridworker  网格员: the polls they created or put to the grids they look after; reads the geography tree; no cases
viewer      reads every case, changes nothing, sees phone numbers masked
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.services.operators import Operator

ALL = frozenset({"admin", "dispatcher", "unit", "supervisor", "gridworker", "viewer"})
SEE_CASES = frozenset({"admin", "dispatcher", "unit", "supervisor", "viewer"})
SEE_PHONE = frozenset({"admin", "dispatcher", "unit", "supervisor"})
# Canned replies (常用答复): admins write them; whoever may reply uses them.
MANAGE_CANNED = frozenset({"admin"})

# The geography tree (区→街道→社区→网格, bot/console/grids.py): admins change it; the others here read it and
# print a grid's QR poster.
SEE_GRIDS = frozenset({"admin", "dispatcher", "supervisor", "viewer", "gridworker"})
MANAGE_GRIDS = frozenset({"admin"})

# Opinion polls (bot/console/polls.py). A grid worker sees and runs only their own (its Scope): the
# polls they created and those put to grids under the areas they look after, and creates polls only for those.
SEE_POLLS = frozenset({"admin", "dispatcher", "supervisor", "viewer", "gridworker"})
SEE_ALL_POLLS = frozenset({"admin", "dispatcher", "supervisor", "viewer"})
CREATE_POLLS = frozenset({"admin", "dispatcher", "gridworker"})
# Closing early, entering door-to-door votes, linking a case: these roles for any poll, and the operator of
# the grid worker who created it for that poll.
RUN_POLLS = frozenset({"admin", "dispatcher"})

# Visits (巡回接访、上门服务, bot/console/visits.py). These roles plan visits (with a date, a team and the cases
# to take along), complete and cancel them; RECORD_VISITS record a visit done. A unit handler records, sees and
# completes only visits whose cases are all their unit's; a grid worker's account sees the visits it recorded.
SEE_VISITS = frozenset({"admin", "dispatcher", "supervisor", "viewer", "unit", "gridworker"})
SEE_ALL_VISITS = frozenset({"admin", "dispatcher", "supervisor", "viewer"})
PLAN_VISITS = frozenset({"admin", "dispatcher", "supervisor"})
RECORD_VISITS = frozenset({"admin", "dispatcher", "supervisor", "unit", "gridworker"})

# Each case action of the console and the roles that may take it.
CASE_ACTIONS: dict[str, frozenset[str]] = {
    "accept": frozenset({"admin", "dispatcher"}),
    "refuse": frozenset({"admin", "dispatcher"}),
    "assign": frozenset({"admin", "dispatcher"}),
    "route": frozenset({"admin", "dispatcher"}),
    "tier": frozenset({"admin", "dispatcher", "supervisor"}),
    "summon": frozenset({"admin", "dispatcher", "supervisor"}),
    "checkin": frozenset({"admin", "dispatcher", "unit"}),
    "return": frozenset({"admin", "unit"}),
    "start": frozenset({"admin", "dispatcher", "unit"}),
    "reply": frozenset({"admin", "dispatcher", "unit"}),
    "extend": frozenset({"admin", "dispatcher", "supervisor"}),
    "close": frozenset({"admin", "dispatcher", "supervisor"}),
    "reopen": frozenset({"admin", "dispatcher", "supervisor"}),
    "merge": frozenset({"admin", "dispatcher"}),
    "note": frozenset({"admin", "dispatcher", "unit", "supervisor"}),
    # 积案 (bot/services/longrun.py): the responsible leader (包案领导), and closing by 息诉罢访 with the signed
    # commitment attached (its own multipart route, bot/console/longrun.py).
    "leader": frozenset({"admin", "dispatcher", "supervisor"}),
    "commit_close": frozenset({"admin", "dispatcher", "supervisor"}),
}
# The list of long-running cases (/console/long-running): a unit handler is not on it (it spans every unit).
SEE_LONG_RUNNING = frozenset({"admin", "dispatcher", "supervisor", "viewer"})

# People's mediation on a case (bot/console/mediation.py) and the files attached to cases (bot/console/files.py):
# staff and the unit handlers of the case (who must also see it, as for every case action).
_FIELD_STAFF = frozenset({"admin", "dispatcher", "supervisor", "unit"})
MEDIATION_ACTIONS: dict[str, frozenset[str]] = {
    "mediation_start": _FIELD_STAFF,
    "mediation_mediator": _FIELD_STAFF,
    "mediation_session": _FIELD_STAFF,
    "mediation_conclude": _FIELD_STAFF,
}
# Uploading a file to a case (POST /console/cases/{number}/files); downloading one needs only sees_case.
FILE_ACTIONS: dict[str, frozenset[str]] = {"file_upload": _FIELD_STAFF}


def may(operator: Operator, action: str) -> bool:
    allowed = CASE_ACTIONS.get(action) or MEDIATION_ACTIONS.get(action) or FILE_ACTIONS.get(action, frozenset())
    return operator.role in allowed


def may_name(action: str | None) -> bool:
    """Whether `action` names a case action of any table (the case page's "done" message)."""
    return action in CASE_ACTIONS or action in MEDIATION_ACTIONS or action in FILE_ACTIONS


def sees_cases(operator: Operator) -> bool:
    return operator.role in SEE_CASES


def sees_case(operator: Operator, lead_unit: str | None, co_units: Iterable[str]) -> bool:
    """A unit handler sees the cases their unit leads or co-handles; the other case roles see every case."""
    if operator.role not in SEE_CASES:
        return False
    if operator.role == "unit":
        return operator.unit is not None and (operator.unit == lead_unit or operator.unit in set(co_units))
    return True


def sees_reports(operator: Operator) -> bool:
    """The dashboard and the ledger export: every role that reads cases (a unit handler only with a unit)."""
    return operator.role in SEE_CASES and (operator.role != "unit" or operator.unit is not None)


def report_scope(operator: Operator) -> str | None:
    """The unit whose cases a report covers — a unit handler's own — or None for every case."""
    return operator.unit if operator.role == "unit" else None


def sees_phone(operator: Operator) -> bool:
    return operator.role in SEE_PHONE


def mask_phone(phone: str | None) -> str:
    """138****5678: enough to tell two numbers apart on the phone, not enough to call."""
    if not phone:
        return ""
    digits = phone.strip()
    if len(digits) <= 4:
        return "*" * len(digits)
    keep = 3 if len(digits) >= 11 else 1
    return digits[:keep] + "*" * (len(digits) - keep - 4) + digits[-4:]
