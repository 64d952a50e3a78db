#!/usr/bin/env python3
"""Prints the sha256 of a ConfigMap's config.toml, for the pod template's
checksum/config annotation (a config change then rolls the pods)."""
import hashlib
import sys

import yaml

with open(sys.argv[1]) as f:
    doc = yaml.safe_load(f)
print(hashlib.sha256(doc["data"]["config.toml"].encode()).hexdigest())
