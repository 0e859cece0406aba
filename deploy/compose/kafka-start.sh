#!/bin/bash
# The Kafka container's start (apache/kafka image): the same broker as `lienthong infra up`'s, with the security
# settings the credentials job wrote (SASL/SCRAM for clients, PLAIN for the controller, StandardAuthorizer,
# super user admin) and admin's SCRAM credential put into the first metadata records (KIP-900).
set -euo pipefail
secrets=/run/lienthong/broker
props=/tmp/server.properties  # written anew at each start, from the image and the secrets
cat > "$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
listeners=CLIENT://:9092,CONTROLLER://:9093
advertised.listeners=CLIENT://kafka:9092
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
log.dirs=/var/lib/kafka/data
auto.create.topics.enable=false
num.partitions=6
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
cat "$secrets/broker-security.properties" >> "$props"
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  /opt/kafka/bin/kafka-storage.sh format -t "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" -c "$props" \
    --ignore-formatted --add-scram "SCRAM-SHA-512=[name=admin,password=$(cat "$secrets/admin")]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$props"
