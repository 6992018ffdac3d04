"""Stand-in @MODULE@ of ParaView @VERSION@ (pvwtasks demo release, not ParaView)."""

VERSION = "@VERSION@"
