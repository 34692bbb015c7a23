#!/usr/bin/env python3
"""Writes the JSON schemas kubeconform validates the chart against, without any download.

kubeconform looks a resource up as {{ .ResourceKind }}{{ .KindSuffix }}.json: the lower-case
kind, then -<first label of the API group> (if any) and -<version>, e.g. deployment-apps-v1.json,
service-v1.json, stream-riffle-v1alpha1.json. Every schema written here is strict: objects
with declared properties refuse any other (additionalProperties: false).

  schemas.py k8s OPENAPI_V2.json OUT_DIR
      Kubernetes kinds, from an API server's /openapi/v2 (kubectl get --raw /openapi/v2).
      One small file per kind refers into a shared _definitions.json (descriptions dropped),
      so the whole API stays well under a megabyte.
  schemas.py crds CRD_DIR OUT_DIR
      Custom resources, from the openAPIV3Schema of each CRD YAML in CRD_DIR (needs PyYAML).
"""

import glob
import json
import os
import sys

# Kubernetes types that the OpenAPI document describes as plain strings but that accept
# numbers in manifests (YAML `cpu: 1`, `port: 8080`).
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


def kind_suffix(group: str, version: str) -> str:
    """The file-name suffix kubeconform derives from an apiVersion."""
    first = group.split(".")[0].lower() if group else ""
    return (f"-{first}" if first else "") + f"-{version.lower()}"


def nullable(schema: dict) -> dict:
    """Lets a field be null, as the API server accepts for any optional field."""
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    return schema


def convert(node, *, strict_objects: bool = True):
    """Rewrites one OpenAPI (v2 or CRD v3) schema node into draft-4 JSON schema."""
    if isinstance(node, list):
        return [convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string" or node.get("x-kubernetes-int-or-string"):
        return {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
    out = {}
    for key, value in node.items():
        if key in ("description", "format", "example", "externalDocs", "default"):
            continue
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        if key == "$ref":
            out[key] = "_definitions.json" + value if value.startswith("#/definitions/") else value
        elif key == "properties":
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = convert(value)
        else:
            out[key] = convert(value)
    preserve = node.get("x-kubernetes-preserve-unknown-fields")
    if strict_objects and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    if "$ref" not in out:
        nullable(out)
    return out


def k8s(openapi_path: str, out_dir: str) -> None:
    with open(openapi_path) as f:
        definitions = json.load(f)["definitions"]
    # Built-in kinds only: CRDs installed in the cluster the document came from (a test may
    # have left an old Stream CRD there) are no reference; `crds` reads ours from the repo.
    definitions = {name: schema for name, schema in definitions.items() if name.startswith("io.k8s.")}
    shared = {}
    for name, schema in definitions.items():
        if name == QUANTITY:
            shared[name] = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
        elif name == INT_OR_STRING:
            shared[name] = {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}
        else:
            converted = convert(schema)
            # Within _definitions.json, refs point into the same document.
            shared[name] = json.loads(json.dumps(converted).replace('"_definitions.json#/', '"#/'))
    os.makedirs(out_dir, exist_ok=True)
    for old in glob.glob(os.path.join(out_dir, "*.json")):
        os.remove(old)
    write(os.path.join(out_dir, "_definitions.json"), {"definitions": shared})
    count = 0
    for name, schema in sorted(definitions.items()):
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            # Only a kind's own type, not the shared meta types that list every group.
            if not name.endswith("." + gvk["kind"]) or "properties" not in schema:
                continue
            if "kind" not in schema["properties"] or "apiVersion" not in schema["properties"]:
                continue
            file = f"{gvk['kind'].lower()}{kind_suffix(gvk['group'], gvk['version'])}.json"
            write(os.path.join(out_dir, file), {"$ref": f"_definitions.json#/definitions/{name}"})
            count += 1
    print(f"wrote {count} kinds and _definitions.json to {out_dir}")


def crds(crd_dir: str, out_dir: str) -> None:
    import yaml  # only this command needs PyYAML

    os.makedirs(out_dir, exist_ok=True)
    count = 0
    for path in sorted(glob.glob(os.path.join(crd_dir, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                group, kind = spec["group"], spec["names"]["kind"]
                for version in spec["versions"]:
                    schema = convert(version["schema"]["openAPIV3Schema"])
                    props = schema.setdefault("properties", {})
                    props["apiVersion"] = {"enum": [f"{group}/{version['name']}"]}
                    props["kind"] = {"enum": [kind]}
                    # The API server validates metadata itself; CRD schemas leave it out.
                    props.setdefault("metadata", {"type": "object"})
                    schema["type"] = "object"
                    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
                    file = f"{kind.lower()}{kind_suffix(group, version['name'])}.json"
                    write(os.path.join(out_dir, file), schema)
                    count += 1
    print(f"wrote {count} custom resource schema(s) to {out_dir}")


def write(path: str, value) -> None:
    with open(path, "w") as f:
        json.dump(value, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")


def main(argv) -> int:
    commands = {"k8s": k8s, "crds": crds}
    if len(argv) != 4 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    commands[argv[1]](argv[2], argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
