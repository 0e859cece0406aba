#!/bin/bash
# MongoDB with authentication as a replica set: members authenticate to each other with a key file, made once
# and kept in the data volume; the root user comes from MONGO_INITDB_ROOT_*, the services' user from
# mongo-init.js (first start only).
set -euo pipefail
key=/data/db/replica.key
if [ ! -f "$key" ]; then
  head -c 756 /dev/urandom | base64 -w 0 > "$key"
fi
chmod 400 "$key"
chown mongodb:mongodb "$key"
exec docker-entrypoint.sh mongod --replSet rs0 --bind_ip_all --keyFile "$key"
