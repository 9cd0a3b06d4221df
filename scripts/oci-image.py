#!/usr/bin/env python3
"""Write a single-layer OCI image archive without Docker, a registry or root.

The archive is an OCI image layout in a tar file (oci-layout, index.json, blobs/sha256/...), the
format that `ctr images import`, `kind load image-archive`, `k3s ctr images import` and
`skopeo copy oci-archive:...` read. The build is reproducible: files are sorted, owned by root,
dated SOURCE_DATE_EPOCH (default 0) and gzip headers carry no time, so the same inputs give the
same digest.

    oci-image.py --output irsa-webhook.tar --name localhost/irsa-webhook:dev \
        --add target/release/irsa-webhook:/usr/local/bin/irsa-webhook:0755 \
        --symlink /usr/local/bin/irsa-webhook:/webhook --user 65532:65532 \
        --entrypoint '["/usr/local/bin/irsa-webhook"]' --cmd '["--help"]'

--add SRC:DEST[:MODE] copies a file or a whole directory tree (symlinks kept as symlinks, hard
links as hard links); --dir DEST[:MODE] makes an empty directory; --symlink TARGET:DEST a link.
Parent directories are created 0755. Only the image's name and digest are printed.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


class ImageError(Exception):
    """A bad argument or an unreadable input, reported without a traceback."""


def split_spec(spec, flag, parts):
    """Splits SRC:DEST[:MODE] style arguments; MODE is octal."""
    fields = spec.split(":")
    if not parts[0] <= len(fields) <= parts[1] or not all(fields[: parts[0]]):
        raise ImageError(f"{flag} {spec!r}: expected {parts[0]} to {parts[1]} ':'-separated fields")
    mode = None
    if parts[1] > parts[0] and len(fields) == parts[1]:
        try:
            mode = int(fields[-1], 8)
        except ValueError:
            raise ImageError(f"{flag} {spec!r}: mode {fields[-1]!r} is not octal") from None
        fields = fields[:-1]
    return fields, mode


def image_path(dest, flag):
    """The path in the layer: relative, '' for the root."""
    inner = dest.strip("/")
    if not dest.startswith("/") or (inner and any(p in ("", ".", "..") for p in inner.split("/"))):
        raise ImageError(f"{flag}: {dest!r} must be an absolute, normalised path in the image")
    return inner


class Layer:
    """The entries of one layer, keyed by their path in the image."""

    def __init__(self, epoch):
        self.epoch = epoch
        self.entries = {}  # path -> (TarInfo, host file or None)
        self.inodes = {}  # (dev, ino) -> first path, for hard links

    def _info(self, path, kind, mode, size=0, link=""):
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.size, info.linkname = kind, mode, size, link
        info.mtime, info.uid, info.gid, info.uname, info.gname = self.epoch, 0, 0, "", ""
        return info

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in self.entries:
                self.entries[parent] = (self._info(parent, tarfile.DIRTYPE, 0o755), None)
            elif self.entries[parent][0].type != tarfile.DIRTYPE:
                raise ImageError(f"/{parent} is both a file and a directory in the image")

    def put(self, path, info, source=None):
        self._parents(path)
        self.entries[path] = (info, source)

    def directory(self, path, mode):
        self.put(path, self._info(path, tarfile.DIRTYPE, 0o755 if mode is None else mode))

    def symlink(self, target, path):
        self.put(path, self._info(path, tarfile.SYMTYPE, 0o777, link=target))

    def add(self, source, path, mode):
        try:
            st = os.lstat(source)
        except OSError as err:
            raise ImageError(f"--add {source}: {err.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            if path:
                self.directory(path, mode if mode is not None else stat.S_IMODE(st.st_mode))
            for name in sorted(os.listdir(source)):
                # A mode given for a tree applies to its root only.
                self.add(os.path.join(source, name), f"{path}/{name}" if path else name, None)
        elif stat.S_ISLNK(st.st_mode):
            self.symlink(os.readlink(source), path)
        elif not path:
            raise ImageError(f"--add {source}: only a directory can be added as the image's root")
        elif stat.S_ISREG(st.st_mode):
            first = self.inodes.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if first is not None:
                self.put(path, self._info(path, tarfile.LNKTYPE, stat.S_IMODE(st.st_mode), link=first))
                return
            self.inodes[(st.st_dev, st.st_ino)] = path
            file_mode = stat.S_IMODE(st.st_mode) if mode is None else mode
            self.put(path, self._info(path, tarfile.REGTYPE, file_mode, size=st.st_size), source)
        else:
            raise ImageError(f"--add {source}: not a file, directory or symlink (devices and "
                             "sockets do not belong in an image)")

    def tar(self):
        """The uncompressed layer, entries sorted so parents come first."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                info, source = self.entries[path]
                if source is None:
                    tar.addfile(info)
                    continue
                with open(source, "rb") as handle:
                    tar.addfile(info, handle)
                    if handle.tell() != info.size:
                        raise ImageError(f"{source} changed size while it was being read")
        return buffer.getvalue()


def blob(data, blobs):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def key_values(pairs, flag):
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ImageError(f"{flag} {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def json_list(text, flag):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ImageError(f"{flag}: not JSON ({err})") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"{flag}: expected a JSON list of strings, like '[\"/bin/sh\"]'")
    return value


def build(args):
    repository, _, tag = args.name.rpartition(":")
    if not repository or "/" in tag or not tag:
        raise ImageError(f"--name {args.name!r}: expected REPOSITORY:TAG, like localhost/irsa-webhook:dev")
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    layer = Layer(epoch)
    for spec in args.dir:
        (dest,), mode = split_spec(spec, "--dir", (1, 2))
        path = image_path(dest, "--dir")
        if not path:
            raise ImageError("--dir: the image's root always exists")
        layer.directory(path, mode)
    for spec in args.add:
        (source, dest), mode = split_spec(spec, "--add", (2, 3))
        layer.add(source, image_path(dest, "--add"), mode)
    for spec in args.symlink:
        (target, dest), _ = split_spec(spec, "--symlink", (2, 2))
        path = image_path(dest, "--symlink")
        if not path:
            raise ImageError("--symlink: the image's root cannot be a link")
        layer.symlink(target, path)

    raw = layer.tar()
    blobs = {}
    layer_desc = {"mediaType": MEDIA_LAYER, **blob(gzip.compress(raw, args.compress_level, mtime=0), blobs)}
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {"User": args.user, "Env": args.env or ["PATH=/usr/local/bin:/usr/bin:/bin"],
              "WorkingDir": args.workdir, "Labels": key_values(args.label, "--label")}
    if args.entrypoint:
        config["Entrypoint"] = json_list(args.entrypoint, "--entrypoint")
    if args.cmd:
        config["Cmd"] = json_list(args.cmd, "--cmd")
    if args.expose:
        config["ExposedPorts"] = {port: {} for port in args.expose}
    image_config = {
        "created": created, "architecture": args.arch, "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created": created, "created_by": "scripts/oci-image.py"}],
    }
    config_desc = {"mediaType": MEDIA_CONFIG, **blob(json.dumps(image_config, sort_keys=True).encode(), blobs)}
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc, "layers": [layer_desc]}
    manifest_desc = {"mediaType": MEDIA_MANIFEST, **blob(json.dumps(manifest, sort_keys=True).encode(), blobs),
                     "platform": {"architecture": args.arch, "os": "linux"},
                     # containerd (ctr, kind, k3s) names the image from the first, skopeo and
                     # the OCI layout spec from the second.
                     "annotations": {"io.containerd.image.name": args.name,
                                     "org.opencontainers.image.ref.name": tag}}
    index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_desc]}

    files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
             ("index.json", json.dumps(index, sort_keys=True).encode())]
    files += [(f"blobs/sha256/{d.split(':', 1)[1]}", data) for d, data in sorted(blobs.items())]
    partial = args.output + ".partial"
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as out:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
            out.addfile(info)
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, epoch
            out.addfile(info, io.BytesIO(data))
    os.replace(partial, args.output)
    print(f"{args.name} {manifest_desc['digest']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="the OCI archive to write")
    parser.add_argument("--name", required=True, help="REPOSITORY:TAG")
    parser.add_argument("--add", action="append", default=[], metavar="SRC:DEST[:MODE]")
    parser.add_argument("--dir", action="append", default=[], metavar="DEST[:MODE]")
    parser.add_argument("--symlink", action="append", default=[], metavar="TARGET:DEST")
    parser.add_argument("--user", default="", help="UID[:GID], numeric so runAsNonRoot can check it")
    parser.add_argument("--entrypoint", help="JSON list")
    parser.add_argument("--cmd", help="JSON list")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--expose", action="append", default=[], metavar="PORT/PROTO")
    parser.add_argument("--workdir", default="/")
    parser.add_argument("--arch", default=ARCHES.get(os.uname().machine, os.uname().machine))
    parser.add_argument("--compress-level", type=int, default=6, choices=range(0, 10))
    args = parser.parse_args()
    try:
        build(args)
    except ImageError as err:
        sys.exit(f"oci-image.py: ERROR: {err}")
    except OSError as err:
        sys.exit(f"oci-image.py: ERROR: {err}")


if __name__ == "__main__":
    main()
