#!/bin/sh
# Stand-in bin/pvpython of a pvwtasks demo release (not ParaView).
# From 5.9 on, ParaView's bin/pvpython is a small launcher that sets up the
# environment and runs bin/pvpython-real; this one just runs it.
exec "$(dirname -- "$0")/pvpython-real" "$@"
