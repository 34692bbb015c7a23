#!/usr/bin/env python3
"""Sets the user and labels of a single-image OCI layout tarball, in place.

ocimage writes the image (binary, entrypoint, PATH); this adds what it has no flags for, the
numeric user the process runs as and the OCI version labels, and re-digests the config,
manifest and index. The output stays byte-for-byte reproducible: same entry order, fixed
timestamps and owners as ocimage.

Usage: oci-config.py IMAGE.tar --user 65532:65532 [--label KEY=VALUE]...
"""

import argparse
import hashlib
import io
import json
import sys
import tarfile


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(value) -> bytes:
    # Go's encoding/json (ocimage) writes compact JSON with keys sorted for maps.
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def read_layout(path: str) -> dict:
    files = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.isfile():
                files[member.name] = tar.extractfile(member).read()
    return files


def write_layout(path: str, files: dict) -> None:
    blobs = sorted(name for name in files if name.startswith("blobs/sha256/"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name, data=None):
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = 0o644
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        add("oci-layout", files["oci-layout"])
        add("index.json", files["index.json"])
        add("blobs/")
        add("blobs/sha256/")
        for name in blobs:
            add(name, files[name])
    with open(path, "wb") as out:
        out.write(buf.getvalue())


def blob(files: dict, desc: dict) -> bytes:
    return files["blobs/sha256/" + desc["digest"].removeprefix("sha256:")]


def put(files: dict, data: bytes) -> str:
    d = digest(data)
    files["blobs/sha256/" + d.removeprefix("sha256:")] = data
    return d


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--user", required=True, help="UID[:GID], numeric")
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    args = parser.parse_args()
    if not all(part.isdigit() for part in args.user.split(":")):
        parser.error("--user must be numeric (the image has no /etc/passwd)")

    files = read_layout(args.image)
    index = json.loads(files["index.json"])
    if len(index["manifests"]) != 1:
        parser.error("expected an index with exactly one manifest")
    manifest_desc = index["manifests"][0]
    manifest = json.loads(blob(files, manifest_desc))
    config = json.loads(blob(files, manifest["config"]))

    config["config"]["User"] = args.user
    labels = dict(config["config"].get("Labels") or {})
    for label in args.label:
        key, sep, value = label.partition("=")
        if not sep:
            parser.error(f"--label {label!r}: want KEY=VALUE")
        labels[key] = value
    if labels:
        config["config"]["Labels"] = labels

    # Only the blobs still referenced survive.
    layers = {layer["digest"] for layer in manifest["layers"]}
    files = {
        name: data
        for name, data in files.items()
        if not name.startswith("blobs/") or "sha256:" + name.rsplit("/", 1)[1] in layers
    }
    config_bytes = canonical(config)
    manifest["config"] = dict(manifest["config"], digest=put(files, config_bytes), size=len(config_bytes))
    manifest_bytes = canonical(manifest)
    index["manifests"][0] = dict(manifest_desc, digest=put(files, manifest_bytes), size=len(manifest_bytes))
    files["index.json"] = canonical(index)
    write_layout(args.image, files)
    print(index["manifests"][0]["digest"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
