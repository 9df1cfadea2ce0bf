"""The official Cloudpods Python SDK (python-yunionclient) against cloudpods-rs.

Usage: yunionclient_identity.py AUTH_URL PASSWORD
Prints one line per check; exits non-zero on the first failure.
"""
import sys
import warnings

warnings.filterwarnings("ignore")

from yunionclient.api import client as yclient  # noqa: E402

auth_url, password = sys.argv[1], sys.argv[2]

c = yclient.Client(auth_url, "sysadmin", password, "Default", region="region0", endpoint_type="publicURL")
c.set_project(project_name="system")
print("authenticated")

projects = c.projects.list()
names = [p.name for p in projects[0]] if isinstance(projects, tuple) else [p.name for p in projects]
assert "system" in names, names
print("projects:", ",".join(sorted(names)))

users = c.users.list()
unames = [u.name for u in users[0]] if isinstance(users, tuple) else [u.name for u in users]
assert "sysadmin" in unames, unames
print("users:", ",".join(sorted(unames)))

u = c.users.create(name="pyuser", password="pyuser-pw-1", email="py@example.com")
print("created user:", u.name)
got = c.users.get("pyuser")
assert got.email == "py@example.com", got
c.users.update("pyuser", displayname="Py User")
assert c.users.get("pyuser").displayname == "Py User"
c.users.delete("pyuser")
try:
    c.users.get("pyuser")
    raise SystemExit("user still exists after delete")
except Exception as e:  # NotFound
    print("deleted user:", type(e).__name__)
print("ok")
