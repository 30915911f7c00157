"""Blockers of a track's next level, in two groups for people: criteria that ran and did not pass, and workloads the run did not plan.

A verdict's `gap` lists every criterion of the next level that does not
pass. Criteria of a workload that the run's profile did not plan are pending
with the code `workload_not_run`: they did not fail, so `check` and the demo
name those workloads, and the shipped profiles that plan them, apart.
"""

from __future__ import annotations

from agent.i18n import N_, gettext_in

NOT_PLANNED_CODE = "workload_not_run"
UNPLANNED_TEXT = N_("level {level} needs workloads that this run did not plan: {workloads}")
PLANNED_BY_PROFILES = N_("{workload} (profile {profiles})")
PLANNED_BY_NO_PROFILE = N_("{workload} (no shipped profile of rule pack {pack} plans it)")


def split_gap(gap: list[dict]) -> tuple[list[dict], list[str]]:
    """Return the gap entries that ran (or name a required track), and the ids of the unplanned workloads in order."""
    ran, unplanned = [], []
    for item in gap:
        if item.get("code") == NOT_PLANNED_CODE:
            if item["workload"] not in unplanned:
                unplanned.append(item["workload"])
        else:
            ran.append(item)
    return ran, unplanned


def unplanned_text(level: int, workload_ids: list[str], pack_name: str, language: str) -> str:
    """Return the sentence, in `language`, that `level` needs `workload_ids`, which this run did not plan, naming the shipped profiles that plan each one."""
    from agent.runner.profiles import profiles_planning

    profiles = profiles_planning(pack_name, workload_ids)
    named = []
    for workload_id in workload_ids:
        if profiles[workload_id]:
            named.append(gettext_in(language, PLANNED_BY_PROFILES).format(workload=workload_id, profiles=", ".join(profiles[workload_id])))
        else:
            named.append(gettext_in(language, PLANNED_BY_NO_PROFILE).format(workload=workload_id, pack=pack_name))
    return gettext_in(language, UNPLANNED_TEXT).format(level=level, workloads=", ".join(named))
