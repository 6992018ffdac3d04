"""Stand-in ``paraview.apps.packages`` of a pvwtasks demo release (not ParaView).

Prints where this pvpython imports packages from, one path a line.
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description="List the package folders of this pvpython (pvwtasks stand-in)")
    parser.parse_args(argv)
    for entry in sys.path:
        if entry.endswith("site-packages"):
            print(entry)


if __name__ == "__main__":
    main()
