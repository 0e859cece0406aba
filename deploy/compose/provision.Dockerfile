# The Admin-API provisioner of deploy/local (SCRAM users + ACLs from the credentials job's plan), on the
# broker's own jars. A JDK, not a JRE: Provision.java runs as a single-file source program.
FROM eclipse-temurin:17-jdk
COPY --from=apache/kafka:4.4.0 /opt/kafka/libs /opt/kafka/libs
COPY deploy/local/kafka/Provision.java /opt/lienthong/Provision.java
CMD ["bash", "-c", "LIENTHONG_KAFKA_ADMIN_PASSWORD=$(cat /run/lienthong/broker/admin) LIENTHONG_KAFKA_CA_FILE=/run/lienthong/broker/ca.pem java -cp '/opt/kafka/libs/*' /opt/lienthong/Provision.java kafka:9092 admin < /run/lienthong/broker/provision.plan"]
