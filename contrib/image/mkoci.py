#!/usr/bin/env python3
"""Write an OCI image (uncompressed tar layers) into an OCI image layout.

Usage:
  mkoci.py --out DIR --tag TAG --layer A.tar [--layer B.tar ...]
           [--label KEY=VALUE ...] [--cmd ARG ...] [--created RFC3339]
           [--history TEXT ...] [--gc]

Each --layer is an uncompressed tar; it becomes a blob with media type
application/vnd.oci.image.layer.v1.tar (digest == diff_id). If LAYER.sha256
exists next to it (hex digest, as written by `sha256sum`) it is trusted
instead of re-hashing. Blobs are hard-linked into DIR/blobs/sha256 when
possible, copied otherwise. DIR may hold several tags: the manifest named TAG
(annotation org.opencontainers.image.ref.name) is replaced, the others kept;
--gc then removes blobs that no manifest in index.json references.

Only the Python standard library is used.
"""

import argparse
import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"


def die(msg):
    print(f"mkoci: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


def layer_digest(path):
    side = path + ".sha256"
    if os.path.exists(side) and os.path.getmtime(side) >= os.path.getmtime(path):
        with open(side) as f:
            hexd = f.read().split()[0]
        if len(hexd) == 64:
            return hexd
    return sha256_file(path)


def atomic_write(path, data):
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def put_blob_file(blobdir, src, hexd):
    dst = os.path.join(blobdir, hexd)
    if os.path.exists(dst) and os.path.getsize(dst) == os.path.getsize(src):
        return dst
    tmp = os.path.join(blobdir, f".tmp-{hexd}")
    if os.path.exists(tmp):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)
    return dst


def put_blob_bytes(blobdir, data):
    hexd = hashlib.sha256(data).hexdigest()
    dst = os.path.join(blobdir, hexd)
    if not os.path.exists(dst):
        atomic_write(dst, data)
    return hexd


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="OCI layout directory")
    p.add_argument("--tag", required=True)
    p.add_argument("--layer", action="append", required=True, help="uncompressed tar")
    p.add_argument("--history", action="append", default=[],
                   help="created_by text, one per layer (optional)")
    p.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    p.add_argument("--cmd", nargs="+", default=["/sbin/init"])
    p.add_argument("--env", action="append",
                   default=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    p.add_argument("--created", help="RFC 3339 time (default: $SOURCE_DATE_EPOCH or now)")
    p.add_argument("--architecture", default="amd64")
    p.add_argument("--gc", action="store_true", help="remove unreferenced blobs")
    a = p.parse_args()

    if a.history and len(a.history) != len(a.layer):
        die("--history must be given once per --layer")
    labels = {}
    for kv in a.label:
        k, sep, v = kv.partition("=")
        if not sep:
            die(f"bad --label {kv!r}, want KEY=VALUE")
        labels[k] = v
    if a.created:
        created = a.created
    else:
        sde = os.environ.get("SOURCE_DATE_EPOCH")
        t = (datetime.datetime.fromtimestamp(int(sde), datetime.timezone.utc) if sde
             else datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0))
        created = t.strftime("%Y-%m-%dT%H:%M:%SZ")

    out = os.path.abspath(a.out)
    blobdir = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobdir, exist_ok=True)
    layout = os.path.join(out, "oci-layout")
    if not os.path.exists(layout):
        atomic_write(layout, b'{"imageLayoutVersion":"1.0.0"}')

    layers = []
    for path in a.layer:
        if not os.path.isfile(path):
            die(f"layer {path} not found")
        hexd = layer_digest(path)
        put_blob_file(blobdir, path, hexd)
        layers.append({"mediaType": MT_LAYER, "digest": f"sha256:{hexd}",
                       "size": os.path.getsize(path)})

    config = {
        "created": created,
        "architecture": a.architecture,
        "os": "linux",
        "config": {"Env": a.env, "Cmd": a.cmd, "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
        "history": [{"created": created, "created_by": h} for h in a.history],
    }
    if not config["history"]:
        del config["history"]
    config_bytes = canonical(config)
    config_hex = put_blob_bytes(blobdir, config_bytes)

    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": f"sha256:{config_hex}",
                   "size": len(config_bytes)},
        "layers": layers,
        "annotations": {"org.opencontainers.image.created": created},
    }
    manifest_bytes = canonical(manifest)
    manifest_hex = put_blob_bytes(blobdir, manifest_bytes)

    index_path = os.path.join(out, "index.json")
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
    index["manifests"] = [m for m in index.get("manifests", [])
                          if m.get("annotations", {}).get(REF_NAME) != a.tag]
    index["manifests"].append({
        "mediaType": MT_MANIFEST,
        "digest": f"sha256:{manifest_hex}",
        "size": len(manifest_bytes),
        "platform": {"architecture": a.architecture, "os": "linux"},
        "annotations": {REF_NAME: a.tag},
    })
    index["manifests"].sort(key=lambda m: m.get("annotations", {}).get(REF_NAME, ""))
    atomic_write(index_path, json.dumps(index, indent=2).encode() + b"\n")

    if a.gc:
        keep = set()
        for m in index["manifests"]:
            hexd = m["digest"].split(":", 1)[1]
            keep.add(hexd)
            with open(os.path.join(blobdir, hexd)) as f:
                man = json.load(f)
            keep.add(man["config"]["digest"].split(":", 1)[1])
            keep.update(l["digest"].split(":", 1)[1] for l in man.get("layers", []))
        for name in os.listdir(blobdir):
            if name not in keep:
                os.unlink(os.path.join(blobdir, name))

    print(f"sha256:{manifest_hex}")


if __name__ == "__main__":
    main()
