"""Print how Caxton is installed in this Python: "editable", "plain" or "none".

`scripts/test` installs the test extras the same way, so that running the tests does not turn
a user's plain `pip install .` into an editable install (PEP 610's direct_url.json says which).
"""

import json
from importlib import metadata

try:
    dist = metadata.distribution("caxton")
except metadata.PackageNotFoundError:
    print("none")
else:
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    print("editable" if direct.get("dir_info", {}).get("editable") else "plain")
