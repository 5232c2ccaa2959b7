#!/usr/bin/env python3
"""A volume provisioner for the local kwok cluster, which has no storage of its own.

Watches PersistentVolumeClaims and, for each pending claim of a StorageClass whose provisioner is
PROVISIONER, creates a PersistentVolume pre-bound to it (claimRef), the way an external provisioner does;
kube-controller-manager's PV controller then completes the binding within moments. Volumes use
reclaimPolicy Retain, so deleting a claim never deletes a volume (a Released PV stays until removed by
hand). Nothing is stored: kwok runs no containers, the hostPath is only a label for people.

Standard library only, and the machine's python3, because it runs before the project venv exists.
It talks to the API server directly over keep-alive connections (no kubectl per claim), so thousands
of claims get volumes within seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import signal
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PROVISIONER = "sandbox-infra.local/hostpath"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
WATCH_SECONDS = 120
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


class Api:
    """A minimal Kubernetes API client: client-certificate auth, JSON in and out."""

    def __init__(self, server: str, ca: str, cert: str, key: str) -> None:
        url = urllib.parse.urlsplit(server)
        if url.scheme != "https" or not url.hostname:
            raise SystemExit(f"provisioner: expected an https:// server URL, got {server!r}")
        self.host = url.hostname
        self.port = url.port or 443
        self.context = ssl.create_default_context(cafile=ca)
        self.context.load_cert_chain(cert, key)
        self.conn: http.client.HTTPSConnection | None = None

    def _connect(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = self._connect(timeout=30)
            try:
                data = None if body is None else json.dumps(body).encode()
                headers = {"Accept": "application/json", "Content-Type": content_type}
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read().decode()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if resp.status >= 300:
                raise ApiError(resp.status, raw)
            return json.loads(raw) if raw else None
        raise AssertionError("unreachable")

    def watch(self, path: str, resource_version: str) -> Iterator[dict[str, Any]]:
        """Yields watch events until the server ends the stream (after WATCH_SECONDS)."""
        query = urllib.parse.urlencode(
            {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": str(WATCH_SECONDS)}
        )
        conn = self._connect(timeout=WATCH_SECONDS + 30)
        try:
            conn.request("GET", f"{path}?{query}", headers={"Accept": "application/json"})
            resp = conn.getresponse()
            if resp.status >= 300:
                raise ApiError(resp.status, resp.read().decode())
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


class Provisioner:
    def __init__(self, new_api: Callable[[], Api], host_dir: str, workers: int) -> None:
        self.api = new_api()  # the list/watch loop's connection
        self.local = threading.local()  # each worker thread has its own keep-alive connection
        self.new_api = new_api
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provision")
        self.host_dir = host_dir.rstrip("/")
        self.classes: dict[str, dict[str, Any]] = {}
        self.done: set[str] = set()  # claim uids handed to a worker (touched by the watch thread only)
        self.failed: queue.SimpleQueue[str] = queue.SimpleQueue()  # uids to retry, from workers

    def worker_api(self) -> Api:
        api: Api | None = getattr(self.local, "api", None)
        if api is None:
            api = self.local.api = self.new_api()
        return api

    def refresh_classes(self) -> None:
        items = self.api.request("GET", "/apis/storage.k8s.io/v1/storageclasses")["items"]
        self.classes = {sc["metadata"]["name"]: sc for sc in items if sc.get("provisioner") == PROVISIONER}

    def wants(self, pvc: dict[str, Any]) -> bool:
        spec, status = pvc.get("spec", {}), pvc.get("status", {})
        if pvc["metadata"].get("deletionTimestamp") or spec.get("volumeName"):
            return False
        if status.get("phase", "Pending") != "Pending" or pvc["metadata"]["uid"] in self.done:
            return False
        name = spec.get("storageClassName")
        if name and name not in self.classes:
            self.refresh_classes()  # a class created after we started
        return bool(name) and name in self.classes

    def provision(self, pvc: dict[str, Any]) -> None:
        meta, spec = pvc["metadata"], pvc["spec"]
        sc = self.classes[spec["storageClassName"]]
        pv_name = f"pvc-{meta['uid']}"
        size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
        pv: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": pv_name,
                "annotations": {ANN_PROVISIONED_BY: PROVISIONER},
                "labels": {"app.kubernetes.io/managed-by": "sandbox-infra-provisioner"},
            },
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "storageClassName": spec["storageClassName"],
                # Retain whatever the class says: removing a claim must never remove data.
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": f"{self.host_dir}/{meta['namespace']}/{meta['name']}"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        if sc.get("mountOptions"):
            pv["spec"]["mountOptions"] = sc["mountOptions"]
        self.done.add(meta["uid"])
        self.pool.submit(self.provision_in_worker, pvc, pv)

    def provision_in_worker(self, pvc: dict[str, Any], pv: dict[str, Any]) -> None:
        meta = pvc["metadata"]
        what = f"{pv['metadata']['name']} for {meta['namespace']}/{meta['name']}"
        for attempt in range(1, 6):
            try:
                self.bind(pvc, pv)
                return
            except (ApiError, OSError, http.client.HTTPException) as err:
                log(f"attempt {attempt} to provision {what} failed: {err}")
                time.sleep(attempt)
        log(f"giving up on {what} until the next relist")
        self.failed.put(meta["uid"])

    def bind(self, pvc: dict[str, Any], pv: dict[str, Any]) -> None:
        """Creates the volume and completes the binding the way the PV controller would.

        The PV controller would bind the pre-bound volume by itself, but only at about 50 claims a second on
        this machine, while Pulumi waits on every claim. Writing the same fields it writes (claimRef,
        volumeName, bind-completed, both phases) leaves it nothing to change. Every step is idempotent, so a
        restart in the middle simply repeats it.
        """
        api = self.worker_api()
        meta, spec = pvc["metadata"], pvc["spec"]
        ns, name, pv_name = meta["namespace"], meta["name"], pv["metadata"]["name"]
        claim_path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}"
        try:
            api.request("POST", "/api/v1/persistentvolumes", pv)
        except ApiError as err:
            if err.status != 409:  # 409: created before a restart
                raise
        api.request("PATCH", f"/api/v1/persistentvolumes/{pv_name}/status", {"status": {"phase": "Bound"}})
        try:
            api.request(
                "PATCH",
                claim_path,
                {
                    "metadata": {"annotations": {ANN_BIND_COMPLETED: "yes", ANN_BOUND_BY_CONTROLLER: "yes"}},
                    "spec": {"volumeName": pv_name},
                },
            )
        except ApiError as err:
            if err.status == 404:
                log(f"claim {ns}/{name} is gone; volume {pv_name} stays (Retain)")
                return
            raise
        api.request(
            "PATCH",
            f"{claim_path}/status",
            {
                "status": {
                    "phase": "Bound",
                    "accessModes": pv["spec"]["accessModes"],
                    "capacity": pv["spec"]["capacity"],
                }
            },
        )
        log(f"bound {ns}/{name} to {pv_name} ({pv['spec']['capacity']['storage']}, {spec['storageClassName']})")

    def run(self) -> None:
        while True:
            while not self.failed.empty():
                self.done.discard(self.failed.get())  # the next list retries them
            try:
                self.refresh_classes()
                listing = self.api.request("GET", "/api/v1/persistentvolumeclaims")
                for pvc in listing["items"]:
                    if self.wants(pvc):
                        self.provision(pvc)
                rv = listing["metadata"]["resourceVersion"]
                # The watch ends after WATCH_SECONDS; listing again then retries anything that failed.
                for event in self.api.watch("/api/v1/persistentvolumeclaims", rv):
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        raise ApiError(obj.get("code", 500), json.dumps(obj))
                    if event["type"] in ("ADDED", "MODIFIED") and self.wants(obj):
                        self.provision(obj)
                    elif event["type"] == "DELETED":
                        self.done.discard(obj["metadata"]["uid"])
            except (ApiError, OSError, http.client.HTTPException, json.JSONDecodeError, KeyError) as err:
                # 410 Gone (resourceVersion too old) or a restarting API server: list again.
                log(f"relisting after: {err}")
                time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="API server URL (https://127.0.0.1:PORT)")
    parser.add_argument("--ca", required=True, help="CA certificate file")
    parser.add_argument("--cert", required=True, help="client certificate file")
    parser.add_argument("--key", required=True, help="client key file")
    parser.add_argument("--host-dir", required=True, help="directory named in each PV's hostPath")
    parser.add_argument("--workers", type=int, default=4, help="claims provisioned in parallel")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    log(f"provisioner for StorageClasses with provisioner {PROVISIONER} on {args.server}")
    Provisioner(lambda: Api(args.server, args.ca, args.cert, args.key), args.host_dir, args.workers).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
