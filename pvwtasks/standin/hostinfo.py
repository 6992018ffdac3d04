"""Print where this Python's wslink lives and the top-level packages wslink needs, as JSON.

Run by ``pvwtasks.demo`` with the Python a stand-in's pvpython will run, to
fill the stand-in's "bundled" wslink (wslink_bundle.py).
"""
import json
import os
import re
import sys
from importlib import metadata


def top_level(dist):
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    names = set()
    for path in dist.files or ():
        parts = path.parts
        first = parts[0]
        if first.startswith("..") or first == "__pycache__" or first.endswith((".dist-info", ".egg-info", ".pth")):
            continue
        if len(parts) == 1:
            if first.endswith(".py"):
                names.add(first[:-3])
            elif first.endswith(".so"):
                names.add(first.split(".")[0])
        else:
            names.add(first)
    return names


def closure(root):
    seen, names, todo = set(), set(), [root]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        names |= top_level(dist)
        for requirement in dist.requires or ():
            if re.search(r"\bextra\s*==", requirement):
                continue
            todo.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
    return names


def main():
    try:
        import wslink
    except ImportError:
        sys.exit("%s has no wslink" % sys.executable)
    site = os.path.dirname(os.path.dirname(os.path.abspath(wslink.__file__)))
    print(json.dumps({"site": site, "allowed": sorted(closure("wslink") | {"wslink"})}))


if __name__ == "__main__":
    main()
