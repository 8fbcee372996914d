"""The `workers` table: who is alive on which host, with which GPUs (what `zlt workers` lists and what
placement judges queued jobs against). Mixed into JobStore; a worker is live while it heartbeats within
the lease time, judged by time alone (never by a pid on another host).
"""

from __future__ import annotations

import json
from typing import Any


class WorkerPresence:
    """Needs from its host class: tx(), clock, host, lease_ttl, db, _lock."""

    def register_worker(self, worker_id: str, pid: int, gpus: list[int], gpu_info: list[dict] | None = None) -> None:
        """A worker announces itself and its GPUs (`gpu_info`: index, name, vram_gb per GPU, from NVML)."""
        now = self.clock()
        with self.tx() as db:
            db.execute(
                "INSERT INTO workers (id, host, pid, gpus, started_at, heartbeat_at, gpu_info) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "gpus = excluded.gpus, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, "
                "gpu_info = excluded.gpu_info, stopped_at = NULL",
                (worker_id, self.host, pid, ",".join(map(str, gpus)), now, now, json.dumps(gpu_info or [])),
            )

    def worker_heartbeat(self, worker_id: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (self.clock(), worker_id))

    def unregister_worker(self, worker_id: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE workers SET stopped_at = ? WHERE id = ?", (self.clock(), worker_id))

    def live_workers(self) -> list[dict[str, Any]]:
        """Workers that heartbeat within the lease time (a worker on another host is judged by that alone)."""
        cutoff = self.clock() - self.lease_ttl
        with self._lock:
            rows = self.db.execute(
                "SELECT * FROM workers WHERE stopped_at IS NULL AND heartbeat_at >= ? ORDER BY host, started_at",
                (cutoff,),
            ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            try:
                d["gpu_info"] = json.loads(d.get("gpu_info") or "[]")
            except ValueError:
                d["gpu_info"] = []
            out.append(d)
        return out
