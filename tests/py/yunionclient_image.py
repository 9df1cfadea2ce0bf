"""The official Cloudpods Python SDK (python-yunionclient) against glance.

Usage: yunionclient_image.py AUTH_URL PASSWORD IMAGE_FILE
Uploads IMAGE_FILE with X-Image-Meta headers, reads it back with HEAD,
lists it, updates it and deletes it. Prints one line per check.

`ImageManager.upload()` itself cannot run on Python 3 (it calls
`self.list({'name': name})` against `list(self, **kwargs)`), so the upload
sends exactly what it would send, through the SDK's own `raw_request`.
"""
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")

from yunionclient.api import client as yclient  # noqa: E402

auth_url, password, path = sys.argv[1], sys.argv[2], sys.argv[3]

c = yclient.Client(auth_url, "sysadmin", password, "Default", region="region0", endpoint_type="publicURL")
c.set_project(project_name="system")
print("authenticated")

headers = {
    "x-image-meta-name": "pyimg",
    "x-image-meta-disk-format": "qcow2",
    "x-image-meta-size": "%d" % os.path.getsize(path),
    "x-image-meta-container-format": "bare",
    "x-image-meta-is-public": "false",
    "x-image-meta-protected": "false",
    "x-image-meta-property-os_type": "Linux",
    "x-image-meta-property-os_distribution": "Debian%2012",
}
with open(path, "rb") as f:
    data = f.read()
resp, body = c.images.raw_request("POST", "/images", headers=headers, body=data)
import json  # noqa: E402

img = json.loads(body)["image"]
print("uploaded:", img["id"], img["status"])

deadline = time.time() + 60
while True:
    got = c.images.get_by_id(img["id"])
    if got.status == "active":
        break
    assert got.status in ("saving", "probing", "converting"), got.status
    assert time.time() < deadline, "not active in time"
    time.sleep(0.2)
assert got.name == "pyimg", got.name
assert got.disk_format == "qcow2", got.disk_format
assert got.os_type == "Linux", got.properties
assert got.os_distribution == "Debian 12", got.properties
print("head: status=%s size=%s checksum=%s" % (got.status, got.size, got.checksum))

images = c.images.list(name="pyimg")
names = [i.name for i in images[0]]
assert names == ["pyimg"], names
print("list:", ",".join(names))

c.images.update(img["id"], {"min_ram": "256"})
got = c.images.get_by_id(img["id"])
assert got.min_ram == "256", got.min_ram
assert got.os_type == "Linux", got.properties
print("updated: min_ram=%s" % got.min_ram)

c.images.delete(img["id"])
try:
    c.images.get_by_id(img["id"])
    raise SystemExit("image still exists after delete")
except Exception as e:  # NotFound
    print("deleted:", type(e).__name__)
print("ok")
