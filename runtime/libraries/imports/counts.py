"""What an import counts, per item: one name per outcome, the same for every way an import runs
(the local runner, the AWS worker, the CLI through the API).

The counts are flat numbers (DynamoDB adds each with one ``ADD``); ``summary`` gives people the
totals with their break-downs: duplicates by tier, ignored items by reason.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import IMAGE_EXISTS, ApiError
from runtime.libraries.store import TIERS, Added, AddResult, Duplicate

DUPLICATE_TIERS = TIERS
"""``exact``: the same bytes (content hash); ``copy``: the same picture (perceptual hash); ``similar``: the
embedding at or above the threshold (``store.TIERS``)."""
IGNORE_REASONS = ("not_an_image_name", "hidden_file", "not_a_regular_file", "link_outside_folder")
"""Why a listed file or object is not imported: its name has no image format's suffix, it is a
hidden file (``.DS_Store``, macOS's ``._IMG_0001.jpg`` resource forks), it is no regular file (a
FIFO, a socket, a device: its read might never end), or it is a symlink leading out of the folder."""
COUNTS = (
    "processed",
    "added",
    *(f"duplicates_{tier}" for tier in DUPLICATE_TIERS),
    "already_present",
    *(f"ignored_{reason}" for reason in IGNORE_REASONS),
    "failed",
)
"""``already_present``: an id the library already holds (a re-run, a resumed or retried batch)."""


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


def count_of(outcome: AddResult | ApiError) -> str:
    """The count one add's outcome goes to."""
    if isinstance(outcome, Added):
        return "added"
    if isinstance(outcome, Duplicate):
        return f"duplicates_{outcome.tier}"
    return "already_present" if outcome.code == IMAGE_EXISTS else "failed"


def count_of_answer(answer: dict[str, Any]) -> str:
    """The count one add's HTTP answer body goes to (the CLI's imports through the API)."""
    if answer.get("status") == 1:
        return "added"
    if answer.get("status") == 0:
        tier = answer.get("tier") or ("exact" if answer.get("exact") else "similar")  # a server before tiers
        return f"duplicates_{tier}" if tier in DUPLICATE_TIERS else "failed"
    return "already_present" if answer.get("code") == IMAGE_EXISTS else "failed"


def summary(counts: dict[str, int], total: int | None) -> dict[str, Any]:
    """The counts as people read them: totals, with duplicates by tier and ignored items by reason."""
    tiers = {tier: counts.get(f"duplicates_{tier}", 0) for tier in DUPLICATE_TIERS}
    reasons = {reason: counts.get(f"ignored_{reason}", 0) for reason in IGNORE_REASONS}
    return {
        "total": total,
        "processed": counts.get("processed", 0),
        "added": counts.get("added", 0),
        "duplicates": sum(tiers.values()),
        "duplicates_by_tier": tiers,
        "already_present": counts.get("already_present", 0),
        "ignored": sum(reasons.values()),
        "ignored_by_reason": reasons,
        "failed": counts.get("failed", 0),
    }


def counts_of_summary(shown: dict[str, Any]) -> dict[str, int]:
    """The flat counts back from a ``summary`` (an import's answer through the API)."""
    counts = zero_counts()
    for name in ("processed", "added", "already_present", "failed"):
        counts[name] = int(shown.get(name) or 0)
    for tier, value in (shown.get("duplicates_by_tier") or {}).items():
        counts[f"duplicates_{tier}"] = int(value)
    for reason, value in (shown.get("ignored_by_reason") or {}).items():
        counts[f"ignored_{reason}"] = int(value)
    return counts


def summary_line(counts: dict[str, int], total: int | None) -> str:
    """One line for a terminal: ``added 85, duplicates 3 (exact 2, similar 1), ...``."""
    shown = summary(counts, total)

    def detail(parts: dict[str, int]) -> str:
        given = [f"{name.replace('_', ' ')} {value}" for name, value in parts.items() if value]
        return f" ({', '.join(given)})" if given else ""

    return ", ".join(
        [
            f"added {shown['added']}",
            f"duplicates {shown['duplicates']}{detail(shown['duplicates_by_tier'])}",
            f"already present {shown['already_present']}",
            f"ignored {shown['ignored']}{detail(shown['ignored_by_reason'])}",
            f"failed {shown['failed']}",
        ]
    )
