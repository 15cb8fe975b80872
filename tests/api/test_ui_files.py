"""The dashboard's files as the package ships them: every file the page loads is one the node
serves, and none of them names another host."""

from __future__ import annotations

import re

from caxton.api.ui import UI_DIR, ui_files

#: Not a request: the XML namespace of the SVG elements the sequence diagram creates.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_every_file_the_page_loads_is_served() -> None:
    files = ui_files(UI_DIR)
    assert "index.html" in files
    page = files["index.html"][0].decode()
    wanted = set(re.findall(r'(?:src|href)="/ui/([^"]+)"', page))
    for name, (body, ctype) in files.items():
        if name.endswith(".js"):
            assert ctype.startswith("text/javascript")
            wanted |= set(re.findall(r'from "\./([^"]+)"', body.decode()))
    assert {"app.js", "style.css"} <= wanted
    assert wanted <= set(files), wanted - set(files)


def test_no_file_names_another_host() -> None:
    for name, (body, _) in ui_files(UI_DIR).items():
        text = body.decode().replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), name
