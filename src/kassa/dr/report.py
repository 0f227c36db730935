"""The drill's report: what was measured, against the recovery policy of docs/dr.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kassa.dr import audit

if TYPE_CHECKING:
    from datetime import datetime

    from kassa.dr.load import TransferLoad
    from kassa.store.backup import Restored

# The policy (docs/dr.md). The drill reports against these; tests assert only what must never
# vary with the machine's load: the invariants, exact PITR and zero loss when synchronous.
RTO_TARGET_S = 60.0
RPO_ASYNC_TARGET_S = 5.0
LOST_SYNC_TARGET = 0
_IDS_LISTED_MAX = 20


def failover_section(
    load: TransferLoad,
    after: audit.LedgerSnapshot,
    killed_at: datetime,
    marks: dict[str, float],
    first_ack_mono: float,
    at_kill: tuple[int, str] | None,
    funding_ids: set[str],
) -> dict[str, Any]:
    acked = [a for a in load.acks.values() if a.status == 201]
    unknown = sorted(set(after.transfers) - set(load.sent) - funding_ids)
    lost = sorted((a for a in acked if a.id not in after.transfers), key=lambda a: a.at)
    unacked = sorted(i for i in after.transfers if i in load.sent and i not in load.acks)
    killed = marks["killed"]
    return {
        "killed_at": killed_at.isoformat(),
        "replication_lag_bytes_at_kill": at_kill[0] if at_kill else None,
        "standby_sync_state_at_kill": at_kill[1] if at_kill else "disconnected",
        "promote_s": round(marks["promoted"] - killed, 3),
        "repoint_s": round(marks["repointed"] - marks["promoted"], 3),
        "rto_s": round(first_ack_mono - killed, 3),
        "transfers_sent": len(load.sent),
        "acknowledged": len(acked),
        "acknowledged_refused": sum(1 for a in load.acks.values() if a.status == 422),
        "acknowledged_after_retry": sum(1 for a in acked if a.attempts > 1),
        "replayed_after_retry": sum(1 for a in acked if a.replayed),
        "failed_attempts": dict(load.failures),
        "lost_acknowledged": len(lost),
        "lost_ids": [a.id for a in lost[:_IDS_LISTED_MAX]],
        # The span of their acknowledgements, and how far before the kill the loss can reach:
        # a lost transfer committed after its request was sent, so the earliest send bounds it.
        "lost_span_s": round((lost[-1].at - lost[0].at).total_seconds(), 3) if lost else 0.0,
        "rpo_s": round((killed_at - min(a.sent_at for a in lost)).total_seconds(), 3) if lost else 0.0,
        # Answers already on their way when the primary died can reach the client after the kill.
        "lost_last_acknowledged_after_kill_s": round((lost[-1].at - killed_at).total_seconds(), 3) if lost else None,
        "committed_unacknowledged": len(unacked),
        "transfers_never_sent": unknown[:_IDS_LISTED_MAX],
        "invariant_violations": after.violations,
    }


def pitr_section(
    restored: Restored,
    label: str,
    found: audit.LedgerSnapshot,
    funding_ids: set[str],
    expected: set[str],
    model: dict[str, audit.Counters],
    restore_s: float,
) -> dict[str, Any]:
    restored_ids = set(found.transfers) - funding_ids
    last = restored.last_replayed_commit_at
    return {
        "target": restored.target.isoformat(),
        "base_backup": label,
        "restore_s": round(restore_s, 3),
        "last_replayed_commit_at": last.isoformat() if last else None,
        "expected_transfers": len(expected),
        "restored_transfers": len(restored_ids),
        "missing": sorted(expected - restored_ids)[:_IDS_LISTED_MAX],
        "unexpected": sorted(restored_ids - expected)[:_IDS_LISTED_MAX],
        "balance_mismatches": audit.balance_mismatches(found.balances, model),
        "invariant_violations": found.violations,
    }


def verdict(report: dict[str, Any], mode: str) -> dict[str, Any]:
    f, p = report["failover"], report["pitr"]
    checks = {
        "invariants_hold": not (f["invariant_violations"] or p["invariant_violations"] or f["transfers_never_sent"]),
        "pitr_exact": not (p["missing"] or p["unexpected"] or p["balance_mismatches"]),
        "rto_met": f["rto_s"] <= RTO_TARGET_S,
        "rpo_met": f["lost_acknowledged"] <= LOST_SYNC_TARGET if mode == "sync" else f["rpo_s"] <= RPO_ASYNC_TARGET_S,
    }
    if report.get("events") is not None:
        checks["events_drained"] = report["events"]["unpublished_after_drain"] == 0
    targets = {"rto_s_max": RTO_TARGET_S}
    targets |= {"lost_acknowledged_max": LOST_SYNC_TARGET} if mode == "sync" else {"rpo_s_max": RPO_ASYNC_TARGET_S}
    return {"targets": targets, "checks": checks, "ok": all(checks.values())}


def render_text(report: dict[str, Any]) -> str:
    c, f, p, v = report["config"], report["failover"], report["pitr"], report["verdict"]
    mode = c["mode"] + (f" (synchronous_commit={c['sync_commit']})" if c["mode"] == "sync" else "")
    lost = ""
    if f["lost_acknowledged"]:
        lost = (
            f", acknowledged within {f['lost_span_s']:.3f} s of each other; sent at most {f['rpo_s']:.3f} s"
            f" before the kill, the last answer read {f['lost_last_acknowledged_after_kill_s']:.3f} s after it"
        )
    lines = [
        f"kassa dr drill: {mode}, {c['clients']} clients, {report['machine']['nproc']} cores,"
        f" load average {report['machine']['loadavg_at_end'][0]:.2f}",
        f"  transfers sent {f['transfers_sent']}, acknowledged {f['acknowledged']}"
        f" ({f['acknowledged_after_retry']} after a retry, {f['replayed_after_retry']} of them replayed)",
        f"  standby at the kill: {f['standby_sync_state_at_kill']}, {f['replication_lag_bytes_at_kill']} bytes behind",
        f"  RTO {f['rto_s']:.2f} s (promote {f['promote_s']:.2f} s, platform repointed {f['repoint_s']:.2f} s later)",
        f"  RPO: {f['lost_acknowledged']} acknowledged transfers lost" + lost,
        f"  committed but never acknowledged (in flight at the end): {f['committed_unacknowledged']}",
        f"  ledger invariants after failover: {'hold' if not f['invariant_violations'] else f['invariant_violations']}",
        f"  PITR to {p['target']} from base backup {p['base_backup']} in {p['restore_s']:.2f} s:"
        f" {p['restored_transfers']} of {p['expected_transfers']} acknowledged transfers,"
        f" missing {len(p['missing'])}, unexpected {len(p['unexpected'])},"
        f" balance mismatches {len(p['balance_mismatches'])}, invariants"
        f" {'hold' if not p['invariant_violations'] else p['invariant_violations']}",
        "  events after the failover: "
        + (
            "not checked (no workers)"
            if report.get("events") is None
            else f"{report['events']['unpublished_after_drain']} unpublished after {report['events']['drain_s']:.2f} s"
        ),
        "  targets: " + ", ".join(f"{k}={val}" for k, val in v["targets"].items()),
        "  checks: " + ", ".join(f"{k}={'yes' if ok else 'NO'}" for k, ok in v["checks"].items()),
    ]
    return "\n".join(lines)


__all__ = ["failover_section", "pitr_section", "render_text", "verdict"]
