#!/usr/bin/python3
"""Adds a pod to a kubelet PodList file, shaped as the kubelet's GET /pods returns it:
  podlist.py FILE NAMESPACE NAME UID CONTAINER CONTAINER_ID [OwnerKind/OwnerName|-] [label=value ...]"""
import json
import os
import sys

path, ns, name, uid, container, cid, owner, *labels = sys.argv[1:]
try:
    podlist = json.load(open(path))
except FileNotFoundError:
    podlist = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}
meta = {
    "name": name, "namespace": ns, "uid": uid, "resourceVersion": "1", "creationTimestamp": "2026-11-23T00:00:00Z",
    "labels": dict(l.split("=", 1) for l in labels),
    "annotations": {"kubernetes.io/config.source": "api"},
}
if owner != "-":
    kind, oname = owner.split("/", 1)
    api = "batch/v1" if kind == "Job" else "apps/v1"
    meta["ownerReferences"] = [{"apiVersion": api, "kind": kind, "name": oname, "uid": "00000000-0000-0000-0000-000000000001",
                                "controller": True, "blockOwnerDeletion": True}]
status = {
    "phase": "Running", "hostIP": "127.0.0.1", "podIP": "10.244.0.9", "qosClass": "Burstable",
    "containerStatuses": [{"name": container, "state": {"running": {"startedAt": "2026-11-23T00:00:01Z"}}, "lastState": {},
                           "ready": True, "restartCount": 0, "image": "registry.example.com/app:1",
                           "imageID": "registry.example.com/app@sha256:" + "0" * 64, "containerID": f"containerd://{cid}", "started": True}],
}
spec = {"containers": [{"name": container, "image": "registry.example.com/app:1"}], "nodeName": "vm"}
podlist["items"].append({"metadata": meta, "spec": spec, "status": status})
tmp = path + ".tmp"
json.dump(podlist, open(tmp, "w"))
os.replace(tmp, path)
